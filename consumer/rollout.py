"""Rolling a new version out to a running worker: the worker looks at the registry (every
MODEL_POLL_S); a new production or shadow version of a served model is loaded in a thread
as a head on the trunk already built (consumer/serving.py), and swapped in, as a new ModelSet,
before the next batch starts. So a
batch is never half on one version, nothing stops, and a version that cannot be loaded (a
corrupted artefact, a bad hash) is logged and never served: the old one keeps serving.
Rollback is promoting the previous version; the same path brings it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:
    from consumer.batch import BatchProcessor
    from consumer.serving import ModelSet, Served
    from db.registry import ModelVersion

log = logging.getLogger(__name__)

RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long

Serving = dict  # {name: (production ModelVersion or None, shadow ModelVersion or None)}


class Loads(Protocol):
    """consumer.serving.Loader: builds a version's head on the trunks it keeps."""

    trunks: dict

    def registered(self, mv: ModelVersion, stage: str = "production") -> Served: ...


class ModelWatcher:
    """Polls the registry on its own timer (so an idle worker is up to date when work
    arrives) for the registered models among `names`; what it loads is swapped in only by
    `between_batches`, as one new ModelSet."""

    def __init__(self, names: list[str], poll_s: float, query: Callable[[], Serving], loader: Loads):
        self.names, self.poll_s, self._query, self._loader = list(names), poll_s, query, loader
        self._task: Optional[asyncio.Task] = None
        self._pending: Optional[ModelSet] = None  # the next set to serve, once loaded
        self.failed: dict[str, tuple[float, str]] = {}  # ref -> (when, why)

    def start(self, processor: BatchProcessor) -> None:
        self._task = asyncio.ensure_future(self._run(processor))

    async def _run(self, processor: BatchProcessor) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.poll_once(processor)

    def between_batches(self, processor: BatchProcessor) -> None:
        """Swap in what has been loaded since the last batch."""
        if self._pending is None:
            return
        old, new = processor.models, self._pending
        processor.models, self._pending = new, None
        before = {(s.stage, s.name): s.ref for s in (*old.production, *old.shadows)}
        after = {(s.stage, s.name): s.ref for s in (*new.production, *new.shadows)}
        for (stage, name), ref in sorted(after.items()):
            if before.get((stage, name)) != ref:
                log.warning("now serving %s as %s (was %s)", ref, stage, before.get((stage, name), "nothing"))
        for stage, name in sorted(before.keys() - after.keys()):
            log.warning("%s of %s stopped", stage, name)

    async def poll_once(self, processor: BatchProcessor) -> None:
        """Read the registry; load a production or shadow version that differs from what is
        serving (or already waiting to be swapped in)."""
        base = self._pending or processor.models
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, self._query)
        except Exception as exc:  # noqa: BLE001 - the registry being away must not stop classification
            log.warning("cannot read the model registry (%s); still serving %s", exc, _refs(base))
            return
        current = base
        for name in self.names:
            production, shadow = found.get(name, (None, None))
            serving = next(s for s in current.production if s.name == name)
            if production is None:
                log.warning("%s has no production version now; still serving %s", name, serving.ref)
            elif production.version != serving.version:
                loaded = await self._try_load(production, "production")
                if loaded is not None:
                    current = current.with_version(loaded, self._loader.trunks)
            shadowing = next((s for s in current.shadows if s.name == name), None)
            if shadow is None:
                if shadowing is not None:
                    current = current.without_shadow(name)
            elif shadowing is None or shadow.version != shadowing.version:
                loaded = await self._try_load(shadow, "shadow")
                if loaded is not None:
                    current = current.with_version(loaded, self._loader.trunks)
        if current is not base:
            self._pending = current

    async def _try_load(self, mv: ModelVersion, stage: str) -> Optional[Served]:
        failed = self.failed.get(mv.ref)
        if failed and time.monotonic() - failed[0] < RETRY_FAILED_S:
            return None
        log.warning("loading %s (%s) beside what serves", mv.ref, stage)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._loader.registered, mv, stage)
        except Exception as exc:  # noqa: BLE001 - a bad artefact is logged; the old version keeps serving
            self.failed[mv.ref] = (time.monotonic(), str(exc))
            log.error("cannot serve %s: %s; what serves goes on", mv.ref, exc)
            return None

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _refs(models: ModelSet) -> str:
    return ", ".join(s.ref for s in (*models.production, *models.shadows))
