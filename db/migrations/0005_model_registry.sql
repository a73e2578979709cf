-- Models trained on the user's own categories (python -m training): one immutable row per
-- version; the artefact (weights + manifest) is in S3 at `uri`, and a worker refuses it
-- when its SHA-256 differs from `sha256` here.
CREATE TABLE IF NOT EXISTS models (
    name             text        NOT NULL,
    version          integer     NOT NULL CHECK (version >= 1),
    sha256           text        NOT NULL,
    uri              text        NOT NULL,
    base_model       text        NOT NULL,
    categories       jsonb       NOT NULL,
    preprocessing    jsonb       NOT NULL,
    metrics          jsonb       NOT NULL,
    data_fingerprint text        NOT NULL,
    stage            text        NOT NULL DEFAULT 'candidate'
                     CHECK (stage IN ('candidate', 'shadow', 'production', 'retired')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    stage_changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
-- one production and at most one shadow version per model name
CREATE UNIQUE INDEX IF NOT EXISTS models_one_production ON models (name) WHERE stage = 'production';
CREATE UNIQUE INDEX IF NOT EXISTS models_one_shadow ON models (name) WHERE stage = 'shadow';

-- Which version wrote a result: a newer version's row replaces an older one's, never the
-- reverse (0 = a built-in torchvision model, which has no versions).
ALTER TABLE prediction_results ADD COLUMN IF NOT EXISTS model_version integer NOT NULL DEFAULT 0;

-- What a shadow version said about the same images; never read as the answer.
CREATE TABLE IF NOT EXISTS shadow_predictions (
    image_key   text        NOT NULL,
    model       text        NOT NULL,
    version     integer     NOT NULL,
    category    text        NOT NULL,
    confidence  real        NOT NULL,
    class_index integer     NOT NULL,
    top_k       jsonb       NOT NULL,
    hostname    text        NOT NULL,
    time        timestamptz NOT NULL DEFAULT now(),
    infer_ms    real,  -- the shadow model's time for this image (its share of the chunk)
    PRIMARY KEY (image_key, model, version)
);

GRANT SELECT ON models TO vs_worker;
GRANT SELECT, INSERT, UPDATE ON shadow_predictions TO vs_worker;
GRANT SELECT ON models, shadow_predictions TO vs_viewer;
