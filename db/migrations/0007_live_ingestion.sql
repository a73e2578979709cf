-- Keys that arrive by S3 event notification (consumer/notifications.py).
--
-- image_info keeps, per key, what the newest event applied said about the object: its eTag,
-- size, the event's order stamp (the sequencer, padded: events of one key arrive in any
-- order, on any partition) and whether it was removed. A worker writes a key's row only if
-- its event is not older than the stamp stored here, in the same transaction as the row, so
-- an older answer never replaces a newer one.
ALTER TABLE image_info
    ADD COLUMN IF NOT EXISTS etag        text,
    ADD COLUMN IF NOT EXISTS event_stamp text,
    ADD COLUMN IF NOT EXISTS source      text NOT NULL DEFAULT 'upload',
    ADD COLUMN IF NOT EXISTS deleted_at  timestamptz;

-- The eTag of the object a result was computed from (from the GET's answer), and the time
-- its object was removed from the bucket (the row stays: it is the record of what it was).
ALTER TABLE prediction_results
    ADD COLUMN IF NOT EXISTS etag       text,
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE prediction_errors ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
-- The viewer takes the rows marked deleted off its running totals: few, found through this.
CREATE INDEX IF NOT EXISTS prediction_results_deleted_idx ON prediction_results (model) WHERE deleted_at IS NOT NULL;

-- Workers now register keys that arrive by notification, and mark removed ones.
GRANT INSERT, UPDATE ON image_info TO vs_worker;

-- How keys arrive, per source (notification / producer) and kind (key, removed, skipped,
-- refused, stale): counted by the workers as delta rows in the running totals of 0006,
-- model '' and hostname = the source. These cannot be recomputed from the tables, so a
-- recount keeps them.
ALTER TABLE prediction_counts DROP CONSTRAINT IF EXISTS prediction_counts_outcome_check;
ALTER TABLE prediction_counts ADD CONSTRAINT prediction_counts_outcome_check
    CHECK (outcome IN ('result', 'error', 'registered', 'done', 'arrival'));
GRANT INSERT ON prediction_count_deltas TO vs_worker;

CREATE OR REPLACE FUNCTION vs_recount_predictions() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7404222);
    LOCK TABLE prediction_count_deltas IN EXCLUSIVE MODE;
    -- arrivals are counted, not derived: fold them, keep them
    WITH moved AS (DELETE FROM prediction_count_deltas WHERE outcome = 'arrival' RETURNING *)
    INSERT INTO prediction_counts (model, hostname, outcome, label, n)
    SELECT model, hostname, outcome, label, sum(delta) FROM moved GROUP BY 1, 2, 3, 4
    ON CONFLICT (model, outcome, hostname, label) DO UPDATE SET n = prediction_counts.n + EXCLUDED.n;
    DELETE FROM prediction_count_deltas;
    DELETE FROM prediction_counts WHERE outcome <> 'arrival';
    INSERT INTO prediction_counts (model, hostname, outcome, label, n)
    SELECT model, hostname, 'result', category, count(*) FROM prediction_results GROUP BY 1, 2, 4
    UNION ALL SELECT model, hostname, 'error', error_type, count(*) FROM prediction_errors GROUP BY 1, 2, 4
    UNION ALL SELECT '', '', 'registered', '', count(*) FROM image_info HAVING count(*) > 0
    UNION ALL SELECT r.model, '', 'done', 'result', count(*)
              FROM prediction_results r JOIN image_info i USING (image_key) GROUP BY 1
    UNION ALL SELECT e.model, '', 'done', 'error', count(*)
              FROM prediction_errors e JOIN image_info i USING (image_key) GROUP BY 1;
END
$$;
