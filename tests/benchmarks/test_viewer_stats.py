"""benchmarks/viewer_stats.py builds its scratch database, times the viewer's queries and
reports totals that match what it generated (real PostgreSQL)."""

from benchmarks import viewer_stats


def test_the_benchmark_reports_the_generated_totals(stack_settings):
    out = viewer_stats.run(rows=2000, repeat=1, keep=False)
    # 95% results, 2% errors, plus the write-cost batches (30 results + 2 errors each, 3 of them)
    assert out["totals"] == {
        "results_total": 1900 + 90,
        "errors_total": 40 + 6,
        "registered_keys": 2000,
        "keys_without_row": 60,
    }
    assert set(out["median_ms"]) >= {"totals (stats poll)", "class_histogram", "list_predictions page 1"}
