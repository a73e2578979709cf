-- People's labels (viewer/label_routes.py): a labelling project is a model name and its
-- categories; a label is one row, never updated, so relabelling keeps the history and the
-- current label of an image is its newest row (a NULL category: the label was taken back).
CREATE TABLE IF NOT EXISTS labelling_projects (
    model_name text PRIMARY KEY,  -- settings.check_model_name's rule, checked by the viewer
    categories text[] NOT NULL CHECK (cardinality(categories) BETWEEN 2 AND 200),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS labels (
    id bigserial PRIMARY KEY,
    model_name text NOT NULL REFERENCES labelling_projects ON DELETE CASCADE,
    image_key text NOT NULL,
    category text,
    labelled_by text NOT NULL,
    labelled_at timestamptz NOT NULL DEFAULT now(),
    how text NOT NULL CHECK (how IN ('key', 'bulk', 'suggestion', 'undo')),
    queue text  -- the queue that showed the image (random: an unbiased sample of production's answers)
);
CREATE INDEX IF NOT EXISTS labels_current_idx ON labels (model_name, image_key, id DESC);
CREATE INDEX IF NOT EXISTS labels_today_idx ON labels (model_name, labelled_at);
-- A queue hands an image to one labeller at a time: a lease that lapses if they walk away.
CREATE TABLE IF NOT EXISTS label_leases (
    model_name text NOT NULL,
    image_key text NOT NULL,
    holder text NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (model_name, image_key)
);
GRANT SELECT, INSERT ON labelling_projects, labels TO vs_viewer;
GRANT SELECT, INSERT, UPDATE, DELETE ON label_leases TO vs_viewer;
GRANT USAGE ON SEQUENCE labels_id_seq TO vs_viewer;
GRANT SELECT ON labelling_projects, labels TO vs_worker;
