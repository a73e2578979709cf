-- The web viewer only reads. NOLOGIN: give a login to a user of this role with
-- `python -m db create-viewer-login NAME`.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vs_viewer') THEN
        CREATE ROLE vs_viewer NOLOGIN;
    END IF;
END
$$;
GRANT SELECT ON image_info, prediction_results, prediction_errors TO vs_viewer;
-- The fleet page bins rows by time; the per-host charts read recent rows by hostname.
CREATE INDEX IF NOT EXISTS prediction_results_host_time_idx ON prediction_results (hostname, time);
