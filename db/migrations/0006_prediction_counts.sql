-- Running totals, so the viewer's polls cost the same on 10 million rows as on 10 (whole-table
-- aggregates took seconds there: benchmarks/viewer_stats.py).
--
-- outcome      model  hostname  label        counts
-- result       name   host      category     prediction_results rows
-- error        name   host      error_type   prediction_errors rows
-- registered   ''     ''        ''           image_info rows
-- done         name   ''        result|error result / error rows whose key is in image_info
--
-- Writers never update a shared counter row (many workers would queue on it and could deadlock
-- on the order they touch rows in): statement-level triggers append one delta row per group to
-- prediction_count_deltas, and whichever writer gets a try-lock folds the deltas into
-- prediction_counts; nobody ever waits for that lock. Readers sum counts + pending deltas.
CREATE TABLE IF NOT EXISTS prediction_counts (
    model    text   NOT NULL,
    hostname text   NOT NULL,
    outcome  text   NOT NULL CHECK (outcome IN ('result', 'error', 'registered', 'done')),
    label    text   NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (model, outcome, hostname, label)
);
CREATE TABLE IF NOT EXISTS prediction_count_deltas (
    model    text   NOT NULL,
    hostname text   NOT NULL,
    outcome  text   NOT NULL,
    label    text   NOT NULL,
    delta    bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS prediction_count_deltas_model_idx ON prediction_count_deltas (model, outcome);

CREATE OR REPLACE FUNCTION vs_fold_prediction_counts() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF pg_try_advisory_xact_lock(7404222) THEN
        WITH moved AS (DELETE FROM prediction_count_deltas RETURNING *)
        INSERT INTO prediction_counts (model, hostname, outcome, label, n)
        SELECT model, hostname, outcome, label, sum(delta) FROM moved GROUP BY 1, 2, 3, 4
        ON CONFLICT (model, outcome, hostname, label) DO UPDATE SET n = prediction_counts.n + EXCLUDED.n;
    END IF;
END
$$;

-- The exact totals from the tables (full scans): the initial fill, and `python -m db recount`
-- after anything the triggers cannot see.
CREATE OR REPLACE FUNCTION vs_recount_predictions() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7404222);
    LOCK TABLE prediction_count_deltas IN EXCLUSIVE MODE;
    DELETE FROM prediction_count_deltas;
    DELETE FROM prediction_counts;
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

-- Rows leaving (OLD TABLE, -1) and arriving (NEW TABLE, +1); an UPDATE is both, so a
-- redelivery that only moves a result to another host nets to zero for the key's "done".
-- TG_ARGV: the outcome ('result' / 'error') and the column that is its label.
CREATE OR REPLACE FUNCTION vs_count_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    outcome text := TG_ARGV[0];
    label text := quote_ident(TG_ARGV[1]);
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'INSERT INTO prediction_count_deltas
             SELECT model, hostname, %1$L, %2$s, count(*) FROM vs_new GROUP BY 1, 2, 4
             UNION ALL SELECT n.model, %3$L, %4$L, %1$L, count(*) FROM vs_new n JOIN image_info USING (image_key) GROUP BY 1',
            outcome, label, '', 'done');
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(
            'INSERT INTO prediction_count_deltas
             SELECT model, hostname, %1$L, %2$s, -count(*) FROM vs_old GROUP BY 1, 2, 4
             UNION ALL SELECT o.model, %3$L, %4$L, %1$L, -count(*) FROM vs_old o JOIN image_info USING (image_key) GROUP BY 1',
            outcome, label, '', 'done');
    ELSE
        EXECUTE format(
            'INSERT INTO prediction_count_deltas
             SELECT model, hostname, %1$L, label, sum(d) FROM (
                 SELECT model, hostname, %2$s AS label, -1 AS d FROM vs_old
                 UNION ALL SELECT model, hostname, %2$s, 1 FROM vs_new) AS moved
             GROUP BY 1, 2, 4 HAVING sum(d) <> 0',
            outcome, label);
    END IF;
    PERFORM vs_fold_prediction_counts();
    RETURN NULL;
END
$$;

-- A key registered after it was classified (re-upload, producer fed from stdin) makes its
-- existing rows "done"; a key removed from image_info takes them back out.
CREATE OR REPLACE FUNCTION vs_count_images() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO prediction_count_deltas
        SELECT '', '', 'registered', '', -count(*) FROM vs_old HAVING count(*) > 0
        UNION ALL SELECT r.model, '', 'done', 'result', -count(*) FROM vs_old JOIN prediction_results r USING (image_key) GROUP BY 1
        UNION ALL SELECT e.model, '', 'done', 'error', -count(*) FROM vs_old JOIN prediction_errors e USING (image_key) GROUP BY 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO prediction_count_deltas
        SELECT '', '', 'registered', '', count(*) FROM vs_new HAVING count(*) > 0
        UNION ALL SELECT r.model, '', 'done', 'result', count(*) FROM vs_new JOIN prediction_results r USING (image_key) GROUP BY 1
        UNION ALL SELECT e.model, '', 'done', 'error', count(*) FROM vs_new JOIN prediction_errors e USING (image_key) GROUP BY 1;
    END IF;
    PERFORM vs_fold_prediction_counts();
    RETURN NULL;
END
$$;

-- TRUNCATE has no transition tables: it drops the totals it made wrong.
CREATE OR REPLACE FUNCTION vs_count_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_TABLE_NAME = 'image_info' THEN
        DELETE FROM prediction_count_deltas WHERE outcome IN ('registered', 'done');
        DELETE FROM prediction_counts WHERE outcome IN ('registered', 'done');
    ELSE
        DELETE FROM prediction_count_deltas
        WHERE outcome = TG_ARGV[0] OR (outcome = 'done' AND label = TG_ARGV[0]);
        DELETE FROM prediction_counts
        WHERE outcome = TG_ARGV[0] OR (outcome = 'done' AND label = TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$;

-- One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
DROP TRIGGER IF EXISTS vs_count_ins ON prediction_results;
DROP TRIGGER IF EXISTS vs_count_upd ON prediction_results;
DROP TRIGGER IF EXISTS vs_count_del ON prediction_results;
DROP TRIGGER IF EXISTS vs_count_trunc ON prediction_results;
CREATE TRIGGER vs_count_ins AFTER INSERT ON prediction_results REFERENCING NEW TABLE AS vs_new
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_rows('result', 'category');
CREATE TRIGGER vs_count_upd AFTER UPDATE ON prediction_results REFERENCING OLD TABLE AS vs_old NEW TABLE AS vs_new
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_rows('result', 'category');
CREATE TRIGGER vs_count_del AFTER DELETE ON prediction_results REFERENCING OLD TABLE AS vs_old
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_rows('result', 'category');
CREATE TRIGGER vs_count_trunc AFTER TRUNCATE ON prediction_results
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_truncate('result');

DROP TRIGGER IF EXISTS vs_count_ins ON prediction_errors;
DROP TRIGGER IF EXISTS vs_count_upd ON prediction_errors;
DROP TRIGGER IF EXISTS vs_count_del ON prediction_errors;
DROP TRIGGER IF EXISTS vs_count_trunc ON prediction_errors;
CREATE TRIGGER vs_count_ins AFTER INSERT ON prediction_errors REFERENCING NEW TABLE AS vs_new
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_rows('error', 'error_type');
CREATE TRIGGER vs_count_upd AFTER UPDATE ON prediction_errors REFERENCING OLD TABLE AS vs_old NEW TABLE AS vs_new
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_rows('error', 'error_type');
CREATE TRIGGER vs_count_del AFTER DELETE ON prediction_errors REFERENCING OLD TABLE AS vs_old
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_rows('error', 'error_type');
CREATE TRIGGER vs_count_trunc AFTER TRUNCATE ON prediction_errors
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_truncate('error');

DROP TRIGGER IF EXISTS vs_count_ins ON image_info;
DROP TRIGGER IF EXISTS vs_count_upd ON image_info;
DROP TRIGGER IF EXISTS vs_count_del ON image_info;
DROP TRIGGER IF EXISTS vs_count_trunc ON image_info;
CREATE TRIGGER vs_count_ins AFTER INSERT ON image_info REFERENCING NEW TABLE AS vs_new
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_images();
CREATE TRIGGER vs_count_upd AFTER UPDATE ON image_info REFERENCING OLD TABLE AS vs_old NEW TABLE AS vs_new
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_images();
CREATE TRIGGER vs_count_del AFTER DELETE ON image_info REFERENCING OLD TABLE AS vs_old
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_images();
CREATE TRIGGER vs_count_trunc AFTER TRUNCATE ON image_info
    FOR EACH STATEMENT EXECUTE FUNCTION vs_count_truncate();

SELECT vs_recount_predictions();

GRANT SELECT ON prediction_counts, prediction_count_deltas TO vs_viewer, vs_worker;
-- The list pages and the error table read the newest rows of one model (and category).
CREATE INDEX IF NOT EXISTS prediction_errors_model_time_idx ON prediction_errors (model, time);
