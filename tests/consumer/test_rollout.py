"""ModelWatcher: new versions are swapped in only between batches; a bad one never serves;
each served model is watched on its own, on one shared set of trunks."""

import asyncio
from types import SimpleNamespace

from consumer.rollout import ModelWatcher
from tests.fakes import fixed_models, fixed_served


def mv(version: int, stage: str = "production", name: str = "m"):
    return SimpleNamespace(name=name, version=version, stage=stage, ref=f"{name}@{version}")


class FakeLoader:
    """consumer.serving.Loader's part the watcher uses; `bad`: refs whose artefact is refused."""

    def __init__(self, bad=()):
        self.trunks, self.bad, self.loads = {}, set(bad), []

    def registered(self, v, stage="production"):
        self.loads.append(v.ref)
        if v.ref in self.bad:
            raise RuntimeError(f"{v.ref}: sha256 does not match the registry: refused")
        return fixed_served(v.name, v.version, stage)


def processor(*versions: tuple[str, int]):
    return SimpleNamespace(models=fixed_models(*(fixed_served(n, v) for n, v in versions)))


def watcher(registry: dict, loader=None, names=("m",), poll_s=1.0) -> ModelWatcher:
    return ModelWatcher(list(names), poll_s, lambda: dict(registry), loader or FakeLoader())


def serving(p, name: str = "m") -> tuple:
    production = next(s.version for s in p.models.production if s.name == name)
    shadow = next((s.version for s in p.models.shadows if s.name == name), None)
    return production, shadow


def test_a_promote_waits_for_the_next_batch_and_a_bad_version_never_serves():
    registry = {"m": (mv(1), None)}
    loader = FakeLoader(bad={"m@3"})

    async def run():
        p = processor(("m", 1))
        w = watcher(registry, loader)
        seen = []
        registry["m"] = (mv(2), None)
        await w.poll_once(p)  # loaded while a batch runs on v1 ...
        seen.append(serving(p))
        w.between_batches(p)  # ... and swapped in before the next one
        seen.append(serving(p))
        await w.poll_once(p)  # nothing new: nothing loaded
        registry["m"] = (mv(2), mv(3, "shadow"))  # a corrupted artefact
        for _ in range(3):
            await w.poll_once(p)
            w.between_batches(p)
        seen.append(serving(p))
        registry["m"] = (mv(1), None)  # rollback
        await w.poll_once(p)
        w.between_batches(p)
        seen.append(serving(p))
        return seen, w

    seen, w = asyncio.run(run())
    assert seen == [(1, None), (2, None), (2, None), (1, None)]
    assert "m@3" in w.failed and loader.loads == ["m@2", "m@3", "m@1"]  # m@3 not retried on every poll


def test_a_shadow_version_starts_and_stops_with_its_stage():
    registry = {"m": (mv(1), mv(2, "shadow"))}

    async def run():
        p = processor(("m", 1))
        w, states = watcher(registry), []
        for step in range(3):
            if step == 2:
                registry["m"] = (mv(1), None)
            await w.poll_once(p)
            w.between_batches(p)
            states.append(serving(p)[1])
        return states

    assert asyncio.run(run()) == [2, 2, None]


def test_two_models_each_follow_their_own_registry_entry():
    registry = {"a": (mv(1, name="a"), None), "b": (mv(1, name="b"), None)}

    async def run():
        p = processor(("a", 1), ("b", 1), ("squeezenet1_1", 0))
        w = watcher(registry, names=("a", "b"))
        registry["b"] = (mv(2, name="b"), mv(3, "shadow", name="b"))
        await w.poll_once(p)
        w.between_batches(p)
        return serving(p, "a"), serving(p, "b"), serving(p, "squeezenet1_1"), [s.name for s in p.models.production]

    # the built-in model is not watched, and the served order is kept
    assert asyncio.run(run()) == ((1, None), (2, 3), (0, None), ["a", "b", "squeezenet1_1"])


def test_an_idle_worker_polls_on_its_own_timer():
    registry = {"m": (mv(1), None)}

    async def run():
        p = processor(("m", 1))
        w = watcher(registry, poll_s=0.01)
        w.start(p)
        registry["m"] = (mv(5), None)
        await asyncio.sleep(0.2)  # no batch meanwhile
        w.between_batches(p)  # the first batch after the idle time is already on v5
        w.cancel()
        return serving(p)[0]

    assert asyncio.run(run()) == 5


def test_a_registry_outage_keeps_the_version_serving():
    def down():
        raise OSError("connection refused")

    async def run():
        p = processor(("m", 4))
        w = ModelWatcher(["m"], 1.0, down, FakeLoader())
        for _ in range(3):
            await w.poll_once(p)
            w.between_batches(p)
        return serving(p)[0]

    assert asyncio.run(run()) == 4
