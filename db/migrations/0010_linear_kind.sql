-- A fourth kind of version (consumer/heads.py, LinearHead):
--   linear   a linear classifier on the image's embedding, trained from the stored embeddings
--            (`training fit --labels` when every labelled key has one): no photo downloaded
ALTER TABLE models DROP CONSTRAINT IF EXISTS models_kind_check;
ALTER TABLE models ADD CONSTRAINT models_kind_check CHECK (kind IN ('network', 'map', 'mix', 'linear'));
