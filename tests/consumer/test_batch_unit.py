"""BatchProcessor's logic against in-memory fakes (tests/fakes.py): no services, milliseconds."""

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

import consumer.stages as stages_mod
from consumer.batch import Abandoned, BatchProcessor
from settings import Settings
from tests.fakes import ListDeadLetters, ListSink, MemoryS3, fixed_models, messages


def jpeg(color=(200, 30, 30), size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


def make(s3=None, sink=None, models=None, **overrides):
    options = {
        "retry_backoff_max_s": 0.01,
        "decode_workers": 2,
        "s3_max_concurrency": 4,
        "hostname": "unit",
        **overrides,
    }
    settings = Settings(_env_file=None, **options)
    dead, retries = ListDeadLetters(), []
    proc = BatchProcessor(
        settings, models or fixed_models(), s3 or MemoryS3(), sink or ListSink(), dead, on_retry=retries.append
    )
    return proc, dead, retries


@pytest.fixture
def sleeps(monkeypatch):
    """Backoff delays asked for, without waiting them out."""
    asked, real_sleep = [], asyncio.sleep

    async def fake_sleep(delay, *a, **k):
        asked.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(stages_mod.asyncio, "sleep", fake_sleep)
    return asked


def test_each_image_gets_its_own_row_whatever_its_neighbours_do():
    s3 = MemoryS3(
        {"a.jpg": jpeg(), "b.jpg": jpeg(), "text.jpg": b"hello", "big.jpg": jpeg()},
        errors={"denied.jpg": (403, "AccessDenied"), "long": (414, "")},
    )
    sink = ListSink()
    proc, dead, _ = make(s3, sink, max_image_bytes=10_000)
    s3.objects["big.jpg"] = b"\xff" * 20_000  # over MAX_IMAGE_BYTES: never read
    msgs = messages(b"a.jpg", b"denied.jpg", b"text.jpg", b"", b"missing.jpg", b"long", b"big.jpg", b"b.jpg")
    report = asyncio.run(proc.process_until_done(msgs))
    assert [p.image_key for p in sink.predictions] == ["a.jpg", "b.jpg"]  # message order kept
    assert {e.image_key: str(e.error_type) for e in sink.errors} == {
        "denied.jpg": "access_denied",
        "text.jpg": "not_an_image",
        "<empty message p0@3>": "bad_message",
        "missing.jpg": "missing",
        "long": "bad_key",
        "big.jpg": "too_large",
    }
    assert (report.classified, report.failed) == (2, 6)
    assert sorted(o for o, _, _ in dead.sent) == [1, 2, 3, 4, 5, 6]
    proc.close()


def test_any_decoder_exception_is_that_images_error_not_the_batchs(monkeypatch):
    real = stages_mod.load_tensor

    def odd_decoder(data, *args):
        if data == b"boom":
            raise RuntimeError("damaged AVIF")  # not one of the errors decode() knows
        return real(data, *args)

    monkeypatch.setattr(stages_mod, "load_tensor", odd_decoder)
    sink = ListSink()
    proc, _, retries = make(MemoryS3({"ok.jpg": jpeg(), "odd.avif": b"boom"}), sink)
    asyncio.run(proc.process_until_done(messages(b"ok.jpg", b"odd.avif")))
    assert [p.image_key for p in sink.predictions] == ["ok.jpg"]
    assert [(e.image_key, str(e.error_type)) for e in sink.errors] == [("odd.avif", "corrupt")]
    assert retries == []
    proc.close()


def test_outages_are_retried_with_capped_backoff_until_written(sleeps):
    sink = ListSink(fail_times=6)
    proc, _, retries = make(MemoryS3({"a.jpg": jpeg()}, down_for=2), sink, retry_backoff_max_s=2.0)
    report = asyncio.run(proc.process_until_done(messages(b"a.jpg")))
    assert report.classified == 1 and [p.image_key for p in sink.predictions] == ["a.jpg"]
    assert retries == ["transient"] * 8
    assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    proc.close()


def test_a_repeated_bug_becomes_internal_rows_and_dead_letters(sleeps):
    sink = ListSink()
    proc, dead, retries = make(MemoryS3({"a.jpg": jpeg(), "b.jpg": jpeg()}), sink, models=fixed_models(fail_times=99))
    report = asyncio.run(proc.process_until_done(messages(b"a.jpg", b"b.jpg", b"\xff")))
    assert report.error_types == ["internal"] * 3
    assert {e.image_key for e in sink.errors} == {"a.jpg", "b.jpg", "\\xff"}
    assert [t for _, t, _ in dead.sent] == ["internal"] * 3  # they were never published before
    assert retries == ["unexpected"] * 4 and len(sleeps) == 4
    proc.close()


def test_a_stopping_worker_abandons_a_batch_in_retry_and_writes_nothing(sleeps):
    sink = ListSink(fail_times=10**6)
    proc, dead, _ = make(MemoryS3({"a.jpg": jpeg()}), sink)

    async def run():
        task = asyncio.ensure_future(proc.process_until_done(messages(b"a.jpg")))
        while not proc.retrying:
            await asyncio.sleep(0)
        proc.stopping = True
        return await task

    with pytest.raises(Abandoned):
        asyncio.run(run())
    assert sink.predictions == sink.errors == dead.sent == []
    assert proc.retrying is False
    proc.close()


def test_chunks_never_exceed_infer_chunk_size_and_cover_the_batch():
    models = fixed_models()
    objects = {f"{i}.jpg": jpeg((i * 20, 0, 0)) for i in range(7)}
    sink = ListSink()
    proc, _, _ = make(MemoryS3(objects), sink, models=models, infer_chunk_size=3)
    asyncio.run(proc.process_until_done(messages(*[k.encode() for k in objects])))
    calls = models.production[0].head.calls
    assert sum(calls) == 7 and max(calls) <= 3
    assert [p.image_key for p in sink.predictions] == list(objects)
    proc.close()


def test_a_failure_in_a_stage_thread_ends_the_batch_instead_of_hanging_it():
    proc, _, _ = make(MemoryS3({"a.jpg": jpeg(), "b.jpg": jpeg()}))
    proc.stages._infer.shutdown()  # as when the worker closes with a batch in flight
    work = [(m, m.value.decode()) for m in messages(b"a.jpg", b"b.jpg")]
    with pytest.raises(RuntimeError, match="shutdown"):
        asyncio.run(asyncio.wait_for(proc.stages.classify(work, fixed_models()), 10))
    proc.close()


def test_two_models_and_a_shadow_give_a_row_each_and_one_dead_letter_per_image():
    from tests.fakes import fixed_served

    models = fixed_models(
        fixed_served("a", 3, category="box"),
        fixed_served("squeezenet1_1", 0, category="tabby"),
        fixed_served("a", 4, "shadow", category="crate"),
    )
    sink = ListSink()
    proc, dead, _ = make(MemoryS3({"ok.jpg": jpeg(), "bad.jpg": b"not an image"}), sink, models=models)
    report = asyncio.run(proc.process_until_done(messages(b"ok.jpg", b"bad.jpg", b"gone.jpg")))
    rows = sorted((p.image_key, p.model, p.model_version, p.category) for p in sink.predictions)
    assert rows == [("ok.jpg", "a", 3, "box"), ("ok.jpg", "squeezenet1_1", 0, "tabby")]
    assert [(s.image_key, s.model, s.version, s.category) for s in sink.shadows] == [("ok.jpg", "a", 4, "crate")]
    errors = sorted((e.image_key, e.model, str(e.error_type)) for e in sink.errors)
    assert errors == [
        ("bad.jpg", "a", "not_an_image"),
        ("bad.jpg", "squeezenet1_1", "not_an_image"),
        ("gone.jpg", "a", "missing"),
        ("gone.jpg", "squeezenet1_1", "missing"),
    ]
    assert sorted(k for _, _, k in dead.sent) == ["bad.jpg", "gone.jpg"]  # one per image, not per model
    assert (report.classified, report.failed, sorted(report.error_types)) == (1, 2, ["missing", "not_an_image"])
    proc.close()


def test_each_classified_image_gets_its_embedding_from_the_same_pass_and_a_failed_one_none():
    s3 = MemoryS3({"red.jpg": jpeg((200, 30, 30)), "blue.jpg": jpeg((20, 30, 220)), "text.jpg": b"hello"})
    s3.objects["red-again.jpg"] = s3.objects["red.jpg"]
    sink = ListSink()
    models = fixed_models(embed=True)
    proc, _, _ = make(s3, sink, models)
    asyncio.run(proc.process_until_done(messages(b"red.jpg", b"text.jpg", b"blue.jpg", b"red-again.jpg")))
    by_key = {v.image_key: v for v in sink.vectors}
    assert sorted(by_key) == ["blue.jpg", "red-again.jpg", "red.jpg"]  # none for the text file
    assert all(v.trunk == "fake-trunk" for v in by_key.values())
    norms = [float(np.linalg.norm(v.vector)) for v in by_key.values()]
    assert norms == pytest.approx([1.0] * 3, abs=1e-5)
    same = float(by_key["red.jpg"].vector @ by_key["red-again.jpg"].vector)
    other = float(by_key["red.jpg"].vector @ by_key["blue.jpg"].vector)
    assert same == pytest.approx(1.0, abs=1e-5) and other < 0.999


def test_with_embeddings_off_the_sink_gets_none():
    s3 = MemoryS3({"a.jpg": jpeg()})
    sink = ListSink()
    proc, _, _ = make(s3, sink, fixed_models(embed=False))
    asyncio.run(proc.process_until_done(messages(b"a.jpg")))
    assert len(sink.predictions) == 1 and sink.vectors == []
