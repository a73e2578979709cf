"""Rolling a new version out to a running worker: between two batches, the worker looks at
the registry (every MODEL_POLL_S); a new production or shadow version of MODEL_NAME is
loaded in a thread beside the one serving, and swapped in before the next batch starts. So a
batch is never half on one version, nothing stops, and a version that cannot be loaded (a
corrupted artefact, a bad hash) is logged and never served: the old one keeps serving.
Rollback is promoting the previous version; the same path brings it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from consumer.batch import BatchProcessor
    from consumer.model import Classifier
    from db.registry import ModelVersion

log = logging.getLogger(__name__)

_KEEP = object()  # "no change" for a pending swap
RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long


class ModelWatcher:
    """Polls the registry on its own timer (so an idle worker is up to date when work
    arrives); what it loads is swapped in only by `between_batches`."""

    def __init__(
        self,
        name: str,
        poll_s: float,
        query: Callable[[], tuple[Optional[ModelVersion], Optional[ModelVersion]]],
        load: Callable[[ModelVersion], Classifier],
    ):
        self.name, self.poll_s, self._query, self._load = name, poll_s, query, load
        self._task: Optional[asyncio.Task] = None
        self._production = _KEEP  # a loaded Classifier waiting to be swapped in
        self._shadow = _KEEP  # a loaded Classifier, or None to stop shadowing
        self.failed: dict[str, tuple[float, str]] = {}  # ref -> (when, why)

    def start(self, processor: BatchProcessor) -> None:
        self._task = asyncio.ensure_future(self._run(processor))

    async def _run(self, processor: BatchProcessor) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.poll_once(processor)

    def between_batches(self, processor: BatchProcessor) -> None:
        """Swap in what has been loaded since the last batch."""
        if self._production is not _KEEP:
            old = processor.classifier
            processor.classifier, self._production = self._production, _KEEP
            log.warning("now serving %s@%d (was %s@%d)", self.name, processor.classifier.version, old.name, old.version)
        if self._shadow is not _KEEP:
            processor.shadow, self._shadow = self._shadow, _KEEP
            if processor.shadow is None:
                log.warning("shadow stopped")
            else:
                log.warning("shadowing %s@%d on every batch", self.name, processor.shadow.version)

    async def poll_once(self, processor: BatchProcessor) -> None:
        """Read the registry; load a production or shadow version that differs from what is
        serving (or already waiting to be swapped in)."""
        serving = processor.classifier if self._production is _KEEP else self._production
        shadowing = processor.shadow if self._shadow is _KEEP else self._shadow
        loop = asyncio.get_running_loop()
        try:
            production, shadow = await loop.run_in_executor(None, self._query)
        except Exception as exc:  # noqa: BLE001 - the registry being away must not stop classification
            log.warning("cannot read the model registry (%s); still serving %s@%d", exc, self.name, serving.version)
            return
        if production is None:
            log.warning("%s has no production version now; still serving %s@%d", self.name, self.name, serving.version)
        elif production.version != serving.version:
            loaded = await self._try_load(production, serving)
            if loaded is not None:
                self._production = loaded
        if shadow is None:
            if shadowing is not None:
                self._shadow = None
        elif shadowing is None or shadow.version != shadowing.version:
            loaded = await self._try_load(shadow, serving)
            if loaded is not None:
                self._shadow = loaded

    async def _try_load(self, mv: ModelVersion, serving: Classifier) -> Optional[Classifier]:
        failed = self.failed.get(mv.ref)
        if failed and time.monotonic() - failed[0] < RETRY_FAILED_S:
            return None
        log.warning("loading %s (%s) beside %s@%d", mv.ref, mv.stage, self.name, serving.version)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._load, mv)
        except Exception as exc:  # noqa: BLE001 - a bad artefact is logged; the old version keeps serving
            self.failed[mv.ref] = (time.monotonic(), str(exc))
            log.error("cannot serve %s: %s; still serving %s@%d", mv.ref, exc, self.name, serving.version)
            return None

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
