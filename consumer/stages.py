"""Download -> decode+preprocess -> the model, for one batch's images, overlapped: each image
is decoded as soon as it has arrived, and a chunk of INFER_CHUNK_SIZE images goes to the
model (one inference thread) as soon as it is decoded, so the model works while the rest of
the batch downloads and decodes. Per-image failures come back as ImageError values; a
service failure (common.errors.TransientError) propagates at once, and the stages' queued
work for the batch is dropped."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple, Optional, Union

import numpy as np
import torch

from common.errors import ErrorType, ImageError
from consumer.fetch import ImageSource
from consumer.images import load_tensor
from consumer.messages import Message
from consumer.metrics import STAGE_CPU
from consumer.serving import ModelSet, Served
from settings import Settings

_DECODE_CPU, _INFER_CPU = STAGE_CPU.labels("decode"), STAGE_CPU.labels("infer")


class Classified(NamedTuple):
    message: Message
    key: str
    tops: dict[Served, list]  # every served version's top-k
    etag: Optional[str]  # the object's, as the GET answered
    vector: Optional[np.ndarray]  # its embedding (ModelSet.embed), None when they are off


class ImageStages:
    def __init__(self, settings: Settings, images: ImageSource):
        self.settings = settings
        self.images = images
        self._io = ThreadPoolExecutor(settings.s3_max_concurrency, thread_name_prefix="s3")
        self._decode = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        self._infer = ThreadPoolExecutor(1, thread_name_prefix="infer")

    def _fetch(self, key: str) -> Union[bytes, ImageError]:
        return self.images.fetch(key, self.settings.max_image_bytes)

    def _load(self, data: Union[bytes, ImageError]) -> tuple[Union[torch.Tensor, ImageError], float]:
        if isinstance(data, ImageError):
            return data, 0.0
        t, cpu = time.perf_counter(), time.thread_time()
        s = self.settings
        try:
            return load_tensor(data, s.max_image_pixels, s.fast_decode, s.max_image_aspect), time.perf_counter() - t
        except ImageError as exc:
            return exc, time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001 - preprocessing one image must never fail the batch
            return ImageError(ErrorType.CORRUPT, f"{type(exc).__name__}: {exc}"[:500]), time.perf_counter() - t
        finally:
            _DECODE_CPU.inc(time.thread_time() - cpu)

    async def classify(self, work: list[tuple[Message, str]], models: ModelSet):
        """Download, decode and classify `work` with every model of `models`, overlapping the
        three. Returns the Classified images in `work` order, the per-image errors, the stage
        seconds (download = wall time until the last object arrived; decode, infer
        (production) and shadow = busy time), and each served version's model time per image
        in ms."""
        run = _Run(self, len(work), models, asyncio.get_running_loop())
        fetches = [self._io.submit(run.fetch, i, key) for i, (_, key) in enumerate(work)]
        try:
            await run.decoded
            results = await asyncio.gather(*(asyncio.wrap_future(c) for c in run.chunks))
        except BaseException:
            # a transient failure or a cancellation: what has not started never will
            run.stop()
            for f in (*fetches, *run.chunks):
                f.cancel()
            raise
        seconds = run.seconds
        if models.shadows:
            seconds["shadow"] = 0.0
        tops: dict[int, dict[Served, list]] = {}
        vectors: dict[int, np.ndarray] = {}
        took: dict[Served, float] = {}
        images = 0
        for indices, predictions, embedded in results:
            images += len(indices)
            if embedded is not None:
                vectors.update(zip(indices, embedded))
            for p in predictions:
                seconds["infer" if p.served.stage == "production" else "shadow"] += p.seconds
                took[p.served] = took.get(p.served, 0.0) + p.seconds
                for i, top in zip(indices, p.top_k):
                    tops.setdefault(i, {})[p.served] = top
        errors = run.errors
        classified = [
            Classified(m, k, tops[i], run.etags.get(i), vectors.get(i)) for i, (m, k) in enumerate(work) if i in tops
        ]
        failed = [(m, k, errors[i]) for i, (m, k) in enumerate(work) if i in errors]
        ms_per_image = {served: t * 1000 / images for served, t in took.items()} if images else {}
        return classified, failed, seconds, ms_per_image

    def _predict(self, part: list[tuple[int, torch.Tensor]], models: ModelSet):
        """(the chunk's image indices, every served version's predictions, the images'
        embeddings or None): the trunk once."""
        batch = torch.stack([x for _, x in part])
        cpu = time.thread_time()
        embedded = None
        if models.embed:
            predictions, vectors = models.predict_and_embed(batch, models.embed)
            embedded = vectors.numpy()
        else:
            predictions = models.predict(batch)
        _INFER_CPU.inc(time.thread_time() - cpu)
        return [i for i, _ in part], predictions, embedded

    def close(self) -> None:
        for pool in (self._io, self._decode, self._infer):
            pool.shutdown(wait=False, cancel_futures=True)
        self.images.close()


class _Run:
    """One batch, moved along by the pools' own threads: a downloaded image goes straight to a
    decode thread and a full chunk straight to the model thread. The event loop hears once,
    when every image is decoded (or one GET failed for the service's reasons), instead of at
    each image's download and decode (a future, a callback and a wake-up each, all on the
    worker's main thread, whose CPU per image benchmarks/pipeline.py reports)."""

    def __init__(self, stages: ImageStages, images: int, models: ModelSet, loop: asyncio.AbstractEventLoop):
        self.stages, self.models, self.loop = stages, models, loop
        self.left = images
        self.ready: list[tuple[int, torch.Tensor]] = []
        self.chunks: list[Future] = []
        self.errors: dict[int, ImageError] = {}
        self.etags: dict[int, str] = {}
        self.seconds = {"download": 0.0, "decode": 0.0, "infer": 0.0}
        self.start = time.perf_counter()
        self.stopped = False
        self.decoded: asyncio.Future = loop.create_future()
        self._lock = threading.Lock()
        if images == 0:
            self.decoded.set_result(None)

    def fetch(self, i: int, key: str) -> None:
        if self.stopped:
            return
        try:
            blob = self.stages._fetch(key)
            with self._lock:
                self.seconds["download"] = time.perf_counter() - self.start
                etag = getattr(blob, "etag", None)
                if etag:
                    self.etags[i] = etag
            if not self.stopped:
                self.stages._decode.submit(self.decode, i, blob)
        except BaseException as exc:  # TransientError: the batch retries; anything else: it fails
            self._fail(exc)

    def decode(self, i: int, blob: Union[bytes, ImageError]) -> None:
        if self.stopped:
            return
        try:
            tensor, took = self.stages._load(blob)
            with self._lock:
                self.seconds["decode"] += took
                if isinstance(tensor, ImageError):
                    self.errors[i] = tensor
                else:
                    self.ready.append((i, tensor))
                self.left -= 1
                if len(self.ready) >= self.stages.settings.infer_chunk_size or self.left == 0:
                    self._flush()
                done = self.left == 0
        except BaseException as exc:  # the model's pool already shut down (the worker closing)
            self._fail(exc)
            return
        if done:
            self.loop.call_soon_threadsafe(self._settle, None)

    def _fail(self, exc: BaseException) -> None:
        """The batch ends with `exc` now: an exception in a pool's thread would be lost, and
        the batch would wait for ever."""
        self.stop()
        self.loop.call_soon_threadsafe(self._settle, exc)

    def _flush(self) -> None:
        if self.ready:
            self.chunks.append(self.stages._infer.submit(self.stages._predict, list(self.ready), self.models))
            self.ready.clear()

    def _settle(self, exc: Optional[BaseException]) -> None:
        if self.decoded.done():
            return
        if exc is None:
            self.decoded.set_result(None)
        else:
            self.decoded.set_exception(exc)

    def stop(self) -> None:
        self.stopped = True
