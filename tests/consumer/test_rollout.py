"""ModelWatcher: new versions are swapped in only between batches; a bad one never serves."""

import asyncio
from types import SimpleNamespace

from consumer.rollout import ModelWatcher
from tests.fakes import FixedClassifier


def mv(version: int, stage: str = "production"):
    return SimpleNamespace(name="m", version=version, stage=stage, ref=f"m@{version}")


def watcher(registry: dict, load=None) -> ModelWatcher:
    return ModelWatcher(
        "m",
        1.0,
        lambda: (registry["production"], registry["shadow"]),
        load or (lambda v: FixedClassifier(version=v.version)),
    )


def serving(processor) -> tuple:
    return processor.classifier.version, processor.shadow and processor.shadow.version


def test_a_promote_waits_for_the_next_batch_and_a_bad_version_never_serves():
    registry = {"production": mv(1), "shadow": None}
    loads = []

    def load(v):
        loads.append(v.ref)
        if v.version == 3:
            raise RuntimeError("m@3: sha256 does not match the registry: refused")
        return FixedClassifier(version=v.version)

    async def run():
        p = SimpleNamespace(classifier=FixedClassifier(version=1), shadow=None)
        w = watcher(registry, load)
        seen = []
        registry["production"] = mv(2)
        await w.poll_once(p)  # loaded while a batch runs on v1 ...
        seen.append(serving(p))
        w.between_batches(p)  # ... and swapped in before the next one
        seen.append(serving(p))
        await w.poll_once(p)  # nothing new: nothing loaded
        registry["shadow"] = mv(3, "shadow")  # a corrupted artefact
        for _ in range(3):
            await w.poll_once(p)
            w.between_batches(p)
        seen.append(serving(p))
        registry["production"], registry["shadow"] = mv(1), None  # rollback
        await w.poll_once(p)
        w.between_batches(p)
        seen.append(serving(p))
        return seen, w

    seen, w = asyncio.run(run())
    assert seen == [(1, None), (2, None), (2, None), (1, None)]
    assert "m@3" in w.failed and loads == ["m@2", "m@3", "m@1"]  # m@3 not retried on every poll


def test_a_shadow_version_starts_and_stops_with_its_stage():
    registry = {"production": mv(1), "shadow": mv(2, "shadow")}

    async def run():
        p = SimpleNamespace(classifier=FixedClassifier(version=1), shadow=None)
        w, states = watcher(registry), []
        for step in range(3):
            if step == 2:
                registry["shadow"] = None
            await w.poll_once(p)
            w.between_batches(p)
            states.append(serving(p)[1])
        return states

    assert asyncio.run(run()) == [2, 2, None]


def test_an_idle_worker_polls_on_its_own_timer():
    registry = {"production": mv(1), "shadow": None}

    async def run():
        p = SimpleNamespace(classifier=FixedClassifier(version=1), shadow=None)
        w = ModelWatcher(
            "m", 0.01, lambda: (registry["production"], None), lambda v: FixedClassifier(version=v.version)
        )
        w.start(p)
        registry["production"] = mv(5)
        await asyncio.sleep(0.2)  # no batch meanwhile
        w.between_batches(p)  # the first batch after the idle time is already on v5
        w.cancel()
        return p.classifier.version

    assert asyncio.run(run()) == 5


def test_a_registry_outage_keeps_the_version_serving():
    def down():
        raise OSError("connection refused")

    async def run():
        p = SimpleNamespace(classifier=FixedClassifier(version=4), shadow=None)
        w = ModelWatcher("m", 1.0, down, lambda v: FixedClassifier(version=v.version))
        for _ in range(3):
            await w.poll_once(p)
            w.between_batches(p)
        return p.classifier.version

    assert asyncio.run(run()) == 4
