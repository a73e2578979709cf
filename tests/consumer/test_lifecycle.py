"""WorkerLifecycle's bounded stop, with a stand-in processor (no services): a batch in flight
is given SHUTDOWN_TIMEOUT_S and then abandoned; a batch waiting out an outage is abandoned at
once; no new batch starts once stopping."""

import asyncio
import time

from consumer.batch import Abandoned
from consumer.lifecycle import WorkerLifecycle
from consumer.messages import BatchReport, Message
from settings import Settings


class SlowProcessor:
    def __init__(self, seconds: float, retrying: bool = False):
        self.seconds, self.retrying, self.stopping, self.closed = seconds, retrying, False, False

    async def process_until_done(self, messages):
        if self.retrying:
            while not self.stopping:
                await asyncio.sleep(0.01)
            raise Abandoned("worker stopping")
        await asyncio.sleep(self.seconds)
        return BatchReport(len(messages), len(messages), 0, {"batch": self.seconds})

    def close(self):
        self.closed = True


def lifecycle(processor, timeout: float) -> WorkerLifecycle:
    lc = WorkerLifecycle(Settings(_env_file=None, shutdown_timeout_s=timeout), lambda: processor)
    lc.processor = processor
    return lc


async def stop_during_batch(lc: WorkerLifecycle, after: float = 0.05):
    batch = asyncio.ensure_future(lc.run_batch([Message(b"a.jpg", 0, 1)]))
    await asyncio.sleep(after)
    started = time.monotonic()
    await lc.drain()
    return await batch, time.monotonic() - started


def test_a_batch_that_finishes_within_the_timeout_is_written():
    report, took = asyncio.run(stop_during_batch(lifecycle(SlowProcessor(0.3), timeout=2.0)))
    assert report is not None and report.classified == 1 and took < 1.0


def test_a_batch_past_the_timeout_is_abandoned_and_not_acknowledged():
    report, took = asyncio.run(stop_during_batch(lifecycle(SlowProcessor(30.0), timeout=0.3)))
    assert report is None and 0.25 < took < 2.0


def test_a_batch_waiting_out_an_outage_is_abandoned_at_once():
    report, took = asyncio.run(stop_during_batch(lifecycle(SlowProcessor(0, retrying=True), timeout=30.0)))
    assert report is None and took < 1.0


def test_no_batch_starts_once_stopping():
    async def run():
        lc = lifecycle(SlowProcessor(0.01), timeout=1.0)
        await lc.drain()
        return await lc.run_batch([Message(b"a.jpg")]), lc.health()

    report, health = asyncio.run(run())
    assert report is None and health == {"ready": False, "stopping": True}
