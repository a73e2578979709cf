"""The agent's batching logic, in memory through Faust's test_context (no Kafka)."""
import asyncio

import pytest

import consumer.app as consumer_app
from consumer.batch import BatchReport


class RecordingProcessor:
    def __init__(self):
        self.batches: list[list] = []

    async def process_until_done(self, messages):
        self.batches.append(list(messages))
        return BatchReport(len(messages), len(messages), 0, {"infer": 0.0})


@pytest.fixture
def recorder(monkeypatch):
    rec = RecordingProcessor()
    monkeypatch.setattr(consumer_app, "_processor", rec)
    return rec


async def _send_and_wait(values, recorder, expected_total):
    async with consumer_app.classify_images.test_context() as agent:
        for v in values:
            await agent.put(v)
        for _ in range(100):
            if sum(len(b) for b in recorder.batches) >= expected_total:
                break
            await asyncio.sleep(0.05)


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
