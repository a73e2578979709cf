"""Every engine must classify like plain torch; the default one on >= 99.5% of the dev photos."""

import pytest

from consumer.engines import ENGINES, onnx_cache_path
from consumer.model import load_classifier
from settings import Settings


def top1(classifier, batches) -> list[int]:
    return [topk[0].class_index for b in batches for topk in classifier.predict(b)]


@pytest.fixture(scope="module")
def reference(weights_path, dev_batches):
    return top1(
        load_classifier(Settings(_env_file=None, model_weights=weights_path, model_engine="torch", torch_threads=2)),
        dev_batches,
    )


# int8 is not the same arithmetic: its accuracy and agreement are tests/consumer/test_int8.py's
@pytest.mark.parametrize("engine", [e for e in ENGINES if e not in ("torch", "onnxruntime-int8")])
def test_engine_agrees_with_plain_torch(engine, weights_path, dev_batches, reference, tmp_path):
    settings = Settings(
        _env_file=None, model_weights=weights_path, model_engine=engine, torch_threads=2, model_cache_dir=tmp_path
    )
    got = top1(load_classifier(settings), dev_batches)
    agreement = sum(a == b for a, b in zip(got, reference)) / len(reference)
    assert len(got) == 500
    assert agreement >= 0.995, f"{engine}: top-1 agrees with torch on {agreement:.3%}"


def test_default_engine_is_onnxruntime():
    assert Settings(_env_file=None).model_engine == "onnxruntime"


def test_onnx_export_is_cached_per_weights(weights_path, tmp_path):
    settings = Settings(_env_file=None, model_weights=weights_path, model_cache_dir=tmp_path)
    load_classifier(settings)
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and files[0].stat().st_size > 1_000_000
    mtime = files[0].stat().st_mtime_ns
    load_classifier(settings)  # second start reuses the export
    assert files[0].stat().st_mtime_ns == mtime
    assert onnx_cache_path(tmp_path, "squeezenet1_1", "a") != onnx_cache_path(tmp_path, "squeezenet1_1", "b")
    assert not list(tmp_path.glob("*.tmp"))
