-- Images known to the pipeline: one row per object key in the bucket.
CREATE TABLE IF NOT EXISTS image_info (
    image_key     text PRIMARY KEY,
    size_bytes    bigint,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (image_key, model). Workers write it by upsert, so a redelivered
-- Kafka message overwrites its own row instead of adding a second one.
CREATE TABLE IF NOT EXISTS prediction_results (
    image_key   text        NOT NULL,
    model       text        NOT NULL,
    category    text        NOT NULL,
    confidence  real        NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    class_index integer     NOT NULL,
    top_k       jsonb       NOT NULL,
    hostname    text        NOT NULL,
    time        timestamptz NOT NULL DEFAULT now(),
    latency_ms  real,
    PRIMARY KEY (image_key, model)
);
CREATE INDEX IF NOT EXISTS prediction_results_time_idx ON prediction_results (time);
CREATE INDEX IF NOT EXISTS prediction_results_category_idx ON prediction_results (category);

-- Images that could not be classified (corrupt, missing, too large): one row per
-- (image_key, model), so every key ends in exactly one of the two tables.
CREATE TABLE IF NOT EXISTS prediction_errors (
    image_key  text        NOT NULL,
    model      text        NOT NULL,
    error_type text        NOT NULL,
    detail     text        NOT NULL,
    hostname   text        NOT NULL,
    time       timestamptz NOT NULL DEFAULT now(),
    attempts   integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (image_key, model)
);
