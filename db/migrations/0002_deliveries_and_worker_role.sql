-- How many times a key's result was written: > 1 means Kafka redelivered it (at-least-once)
-- and the upsert absorbed the duplicate. Reported by the fault-injection tests.
ALTER TABLE prediction_results ADD COLUMN IF NOT EXISTS deliveries integer NOT NULL DEFAULT 1;

-- Least privilege for workers: read the image list, write results and errors, nothing else.
-- NOLOGIN: give a login to a user of this role with `python -m db create-worker-login NAME`.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vs_worker') THEN
        CREATE ROLE vs_worker NOLOGIN;
    END IF;
END
$$;
GRANT SELECT ON image_info TO vs_worker;
-- SELECT is needed by ON CONFLICT DO UPDATE and by the "no error row over a result" check;
-- DELETE on errors: a key classified after a failure loses its error row.
GRANT SELECT, INSERT, UPDATE ON prediction_results TO vs_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON prediction_errors TO vs_worker;
