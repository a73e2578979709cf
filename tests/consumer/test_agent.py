"""The agent's batching logic, in memory through Faust's test_context (no Kafka)."""

import asyncio

import pytest

import consumer.app as consumer_app
from consumer.messages import BatchReport


class RecordingLifecycle:
    """Stands in for WorkerLifecycle: records batches; `gate` holds them until released;
    `outcome` decides what run_batch does (a report, None = abandoned, or an exception)."""

    def __init__(self):
        self.batches: list[list] = []
        self.gate = None
        self.outcome = "report"
        self.stopped = asyncio.Event()

    async def run_batch(self, messages):
        self.batches.append(list(messages))
        if self.gate is not None:
            await self.gate.wait()
        if self.outcome == "abandon":
            return None
        if self.outcome == "raise":
            raise RuntimeError("escaped the body")
        return BatchReport(len(messages), len(messages), 0, {"infer": 0.0})


@pytest.fixture
def recorder(monkeypatch):
    rec = RecordingLifecycle()
    monkeypatch.setattr(consumer_app.app, "lifecycle", rec)
    return rec


async def _send_and_wait(values, recorder, expected_total):
    async with consumer_app.classify_images.test_context() as agent:
        for v in values:
            await agent.put(v)
        for _ in range(100):
            if sum(len(b) for b in recorder.batches) >= expected_total:
                break
            await asyncio.sleep(0.05)


async def _acks_seen(recorder, values, release) -> tuple[list[bool], list[bool]]:
    """(acked while the batch is in run_batch, acked after it returned or failed)."""
    recorder.gate = asyncio.Event()
    async with consumer_app.classify_images.test_context() as agent:
        events = [await agent.put(v) for v in values]
        for _ in range(100):
            if recorder.batches:
                break
            await asyncio.sleep(0.02)
        during = [e.message.acked for e in events]
        if release:
            recorder.gate.set()
        await asyncio.sleep(0.3)
        return during, [e.message.acked for e in events]


def test_a_batch_is_acknowledged_only_after_its_rows_are_written(recorder):
    during, after = asyncio.run(_acks_seen(recorder, [b"a.jpg", b"b.jpg"], release=True))
    assert during == [False, False] and after == [True, True]


def test_an_abandoned_batch_is_never_acknowledged(recorder):
    recorder.outcome = "abandon"
    _, after = asyncio.run(_acks_seen(recorder, [b"a.jpg", b"b.jpg"], release=True))
    assert after == [False, False]


def test_an_exception_escaping_the_body_acknowledges_nothing(recorder):
    recorder.outcome = "raise"
    _, after = asyncio.run(_acks_seen(recorder, [b"a.jpg", b"b.jpg"], release=True))
    assert after == [False, False]


def test_messages_are_grouped_into_batches_of_at_most_batch_size(recorder):
    size = consumer_app.settings.batch_size
    values = [f"img/{i}.jpg".encode() for i in range(size * 2 + 3)]
    asyncio.run(_send_and_wait(values, recorder, len(values)))
    assert all(len(b) <= size for b in recorder.batches)
    assert [m.value for b in recorder.batches for m in b] == values  # order kept, nothing lost
    assert len(recorder.batches) >= 3


def test_a_partial_batch_is_flushed_after_the_window(recorder):
    values = [b"a.jpg", b"b.jpg"]
    asyncio.run(_send_and_wait(values, recorder, 2))
    assert [m.value for b in recorder.batches for m in b] == values


def test_messages_carry_raw_bytes_for_bad_input(recorder):
    values = [b"", b"\xff\xfe", b"ok.jpg"]
    asyncio.run(_send_and_wait(values, recorder, 3))
    assert [m.value for b in recorder.batches for m in b] == values


def test_the_root_logger_goes_back_from_the_spinners_debug_to_its_handlers_level():
    import logging

    from faust.utils.terminal.spinners import SpinnerHandler

    root = logging.Logger("root-under-test")
    warn = logging.StreamHandler()
    warn.setLevel(logging.WARN)
    root.addHandler(warn)
    root.addHandler(SpinnerHandler(None, level=logging.DEBUG))
    root.setLevel(logging.DEBUG)  # what faust.worker does at -l warn
    consumer_app.restore_root_log_level(root)
    assert root.level == logging.WARN

    info = logging.Logger("info-root")  # at -l info there is no spinner: nothing to undo
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    info.addHandler(handler)
    info.setLevel(logging.INFO)
    consumer_app.restore_root_log_level(info)
    assert info.level == logging.INFO
