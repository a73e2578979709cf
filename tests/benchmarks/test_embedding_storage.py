"""benchmarks/embedding_storage.py writes both layouts to a scratch database on the real
PostgreSQL, reads back what it wrote, and drops the database."""

import psycopg2

from benchmarks import embedding_storage


def test_both_layouts_are_written_read_back_and_measured(stack_settings):
    out = embedding_storage.run(rows=300, batch=32, seed=0)
    bytea, real = out["results"]["bytea"], out["results"]["real[]"]
    assert real["max_abs_error"] == 0.0  # real[] is float32: exact
    assert 0 < bytea["max_abs_error"] < 1e-3  # float16: three decimal digits
    assert bytea["bytes_per_row"] < real["bytes_per_row"]  # 1 KiB of vector against 2 KiB
    assert sorted(out["order"]) == ["bytea", "real[]"]
    with psycopg2.connect(stack_settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (embedding_storage._SCRATCH,))
        assert cur.fetchone() == (0,)
