from prometheus_client import REGISTRY

from consumer import metrics
from consumer.messages import BatchReport


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_report_updates_every_metric():
    before = {
        "images": sample("vs_images_classified_total"),
        "corrupt": sample("vs_image_errors_total", error_type="corrupt"),
        "batches": sample("vs_batch_size_count"),
        "infer": sample("vs_stage_seconds_count", stage="infer"),
        "e2e": sample("vs_end_to_end_seconds_count"),
    }
    metrics.record(
        BatchReport(
            5,
            3,
            2,
            {"download": 0.1, "decode": 0.2, "infer": 0.3, "write": 0.01},
            ["corrupt", "missing"],
            [0.5, 0.7, 0.9],
        )
    )
    assert sample("vs_images_classified_total") - before["images"] == 3
    assert sample("vs_image_errors_total", error_type="corrupt") - before["corrupt"] == 1
    assert sample("vs_batch_size_count") - before["batches"] == 1
    assert sample("vs_stage_seconds_count", stage="infer") - before["infer"] == 1
    assert sample("vs_end_to_end_seconds_count") - before["e2e"] == 3


def test_serve_is_idempotent_and_answers():
    import urllib.request

    port = metrics.serve(None)
    assert metrics.serve(None) == port  # Faust sends on_worker_init twice: one server
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "vs_images_classified_total" in body
