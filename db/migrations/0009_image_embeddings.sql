-- One embedding per image (similar-image search, training from embeddings): the L2-normalised
-- average-pooled output of the trunk that made it, written by the worker in the transaction
-- of the image's rows (db/embeddings.py), so no row exists without its embedding.
--   vector     512 float16 values, little-endian (1 KiB; `real[]` is larger and slower, as
--              measured by benchmarks/embedding_storage.py)
--   trunk      which trunk made it (base model and weights): vectors of two trunks are not
--              comparable, and a search reads one trunk's
--   txid       the writing transaction: the search index catches up with what committed
--              since it last read (rows of transactions still open then have a txid at or
--              above the snapshot's xmin it kept), an upsert moves it on
--   deleted_at set when the object is removed from the bucket: the index drops it
CREATE TABLE IF NOT EXISTS image_embeddings (
    image_key text PRIMARY KEY,
    trunk text NOT NULL,
    vector bytea NOT NULL,
    etag text,
    time timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX IF NOT EXISTS image_embeddings_txid ON image_embeddings (txid);
GRANT SELECT, INSERT, UPDATE ON image_embeddings TO vs_worker;
GRANT SELECT ON image_embeddings TO vs_viewer;
