"""How long the viewer's polled queries take on a large generated table.

Creates a scratch database next to DATABASE_URL's (dropped at the end unless --keep), applies
the migrations, generates --rows registered keys with a result for 95% and an error for 2%
(over 4 hosts, 20 categories, 3 error types), and times every query a dashboard tab polls,
through the viewer's own functions; then the cost of one 32-key write_batch with the
migrations' counter triggers. Prints a table and writes JSON to benchmarks/results/.

    python -m benchmarks.viewer_stats --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
from psycopg2 import sql

from db.migrate import migrate
from db.queries import ErrorRow, Prediction, write_batch
from settings import get_settings
from viewer import queries

RESULTS = Path(__file__).parent / "results"

_GENERATE = """
INSERT INTO image_info (image_key, size_bytes)
    SELECT 'bench/' || lpad(g::text, 9, '0') || '.jpg', 40000 FROM generate_series(1, %(n)s) g;
INSERT INTO prediction_results (image_key, model, category, confidence, class_index, top_k, hostname, time)
    SELECT 'bench/' || lpad(g::text, 9, '0') || '.jpg', %(model)s, 'class' || (g %% 20), 0.5, g %% 20, '[]',
           'worker-' || (g %% 4), now() - make_interval(secs => (%(n)s - g) / 200.0)
    FROM generate_series(1, %(n)s) g WHERE g %% 100 < 95;
INSERT INTO prediction_errors (image_key, model, error_type, detail, hostname, time)
    SELECT 'bench/' || lpad(g::text, 9, '0') || '.jpg', %(model)s,
           (ARRAY['corrupt', 'missing', 'too_large'])[1 + g %% 3], 'generated', 'worker-' || (g %% 4),
           now() - make_interval(secs => (%(n)s - g) / 200.0)
    FROM generate_series(1, %(n)s) g WHERE g %% 100 >= 98;
"""


def _timed(fn, repeat: int) -> float:
    """Median milliseconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _scratch_dsn(dsn: str, name: str) -> str:
    return psycopg2.extensions.make_dsn(dsn, dbname=name)


def run(rows: int, repeat: int, keep: bool) -> dict:
    settings = get_settings()
    model = settings.model_name
    base = settings.database_url
    name = "vs_bench_viewer_stats"
    with closing(psycopg2.connect(base)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = _scratch_dsn(base, name)
    try:
        with closing(psycopg2.connect(dsn)) as conn:
            migrate(conn)
            t0 = time.perf_counter()
            with conn, conn.cursor() as cur:
                cur.execute(_GENERATE, {"n": rows, "model": model})
            generate_s = time.perf_counter() - t0
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE")
            conn.autocommit = False
            conn.set_session(readonly=True)
            filters = queries.Filters(model=model)
            timings = {
                "totals (stats poll)": lambda: queries.totals(conn, model),
                "host_rates 15 min (stats poll)": lambda: queries.host_rates(conn, model, 15, 10),
                "class_histogram": lambda: queries.class_histogram(conn, model, 50),
                "hostnames": lambda: queries.hostnames(conn, model),
                "models": lambda: queries.models(conn, model),
                "list_predictions page 1": lambda: queries.list_predictions(conn, filters, 50, 0),
                "list_predictions by category": lambda: queries.list_predictions(
                    conn, queries.Filters(model=model, category="class7"), 50, 0
                ),
                "recent_errors": lambda: queries.recent_errors(conn, model, 50),
            }
            figures = {label: round(_timed(fn, repeat), 2) for label, fn in timings.items()}
            conn.rollback()
            conn.set_session(readonly=False)
            write_ms = _write_cost(conn, model, repeat * 3)
            stats = queries.totals(conn, model)
            conn.rollback()
    finally:
        if not keep:
            with closing(psycopg2.connect(base)) as admin:
                admin.autocommit = True
                with admin.cursor() as cur:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    return {
        "machine": f"{platform.machine()} {platform.node()}",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
        "generate_s": round(generate_s, 1),
        "median_ms": figures,
        "write_batch_32_ms": write_ms,
        "totals": {k: stats[k] for k in ("results_total", "errors_total", "registered_keys", "keys_without_row")},
    }


def _write_cost(conn, model: str, batches: int) -> float:
    """Median ms of one 32-key write_batch (30 results, 2 errors) into the big tables."""
    now = datetime.now(timezone.utc)
    times = []
    for b in range(batches):
        keys = [f"bench/new-{b}-{i}.jpg" for i in range(32)]
        preds = [Prediction(k, model, "class1", 0.5, 1, [], "worker-9", 5.0, now) for k in keys[:30]]
        errs = [ErrorRow(k, model, "corrupt", "x", "worker-9", now) for k in keys[30:]]
        t0 = time.perf_counter()
        write_batch(conn, preds, errs)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.viewer_stats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="registered keys to generate (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="calls per query; the median is reported")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    out = run(args.rows, args.repeat, args.keep)
    print(f"{out['rows']:,} keys generated in {out['generate_s']} s on {out['machine']}")
    for label, ms in out["median_ms"].items():
        print(f"  {label:<34} {ms:>10.2f} ms")
    print(f"  {'write_batch of 32 keys':<34} {out['write_batch_32_ms']:>10.2f} ms")
    print(f"  totals: {out['totals']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"viewer_stats_{out['rows']}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
