-- Trainings started from the viewer (viewer/jobs.py): one running job per model name at a
-- time (the partial unique index), a heartbeat from the viewer that watches it, so a job whose
-- viewer stopped is seen as lost instead of "running" forever.
CREATE TABLE IF NOT EXISTS training_jobs (
    id bigserial PRIMARY KEY,
    model_name text NOT NULL,
    started_by text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'succeeded', 'failed', 'lost')),
    message text,  -- the last line of progress, or why it failed
    version integer  -- the candidate NAME@N it registered
);
CREATE UNIQUE INDEX IF NOT EXISTS training_jobs_one_running ON training_jobs (model_name) WHERE state = 'running';
GRANT SELECT, INSERT, UPDATE ON training_jobs TO vs_viewer;
GRANT USAGE ON SEQUENCE training_jobs_id_seq TO vs_viewer;
-- admins shadow, promote and roll back from the viewer: the stage only, never the weights
GRANT UPDATE (stage, stage_changed_at) ON models TO vs_viewer;
