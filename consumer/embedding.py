"""Photos -> embeddings exactly as the workers store them: the same decode bounds
(MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGE_ASPECT), the same preprocessing, EMBEDDING_MODEL's
trunk in MODEL_ENGINE, pooled and L2-normalised (consumer/serving.py, ModelSet.predict_and_embed).
For what is not in the table yet: a photo given to `python -m consumer.similar`, an upload to
the viewer's search by photo, the benchmark's photos."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from common.errors import ErrorType, ImageError
from consumer.images import load_tensor
from consumer.serving import Loader
from settings import Settings


class Embedder:
    def __init__(self, settings: Settings, loader: Optional[Loader] = None):
        self.settings = settings
        self.loader = loader or Loader(settings)
        self.trunk = self.loader.base(settings.embedding_model)
        self._models = self.loader.model_set([], [])

    @property
    def key(self) -> str:
        """Which trunk made the vectors (image_embeddings.trunk)."""
        return self.trunk.key

    def tensor(self, data: bytes) -> torch.Tensor:
        """A photo's bytes -> the model's input, or ImageError (too large, not an image, a bomb)."""
        s = self.settings
        if not data:
            raise ImageError(ErrorType.EMPTY, "no bytes")
        if len(data) > s.max_image_bytes:
            raise ImageError(ErrorType.TOO_LARGE, f"{len(data)} bytes is over MAX_IMAGE_BYTES ({s.max_image_bytes})")
        try:
            return load_tensor(data, s.max_image_pixels, s.fast_decode, s.max_image_aspect)
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - as the workers do (consumer/stages.py)
            raise ImageError(ErrorType.CORRUPT, f"{type(exc).__name__}: {exc}"[:500]) from exc

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """[N, 3, 224, 224] -> [N, 512] float32, unit length."""
        _, vectors = self._models.predict_and_embed(batch, self.key)
        return vectors.numpy()

    def embed(self, photos: Sequence[bytes], chunk: int = 16) -> list[Union[np.ndarray, ImageError]]:
        """Each photo's embedding, or the ImageError that says why it has none."""
        out: list[Union[np.ndarray, ImageError]] = []
        ready: list[tuple[int, torch.Tensor]] = []
        for data in photos:
            try:
                ready.append((len(out), self.tensor(data)))
                out.append(ImageError(ErrorType.INTERNAL, "not embedded"))  # replaced below
            except ImageError as exc:
                out.append(exc)
        for start in range(0, len(ready), chunk):
            part = ready[start : start + chunk]
            vectors = self.embed_tensors(torch.stack([t for _, t in part]))
            for (i, _), v in zip(part, vectors):
                out[i] = v
        return out


def main(argv: Optional[list[str]] = None) -> int:
    """python -m consumer.embedding < PHOTO: the photo's embedding as one JSON line,
    {"trunk": ..., "vector": [512 floats]}, or {"error": ..., "error_type": ...} and exit 1.
    What the viewer's search by photo runs, so that torch and a hostile upload's decoding stay
    out of the viewer's own process."""
    import argparse
    import json
    import sys

    from consumer.weights import WeightsError
    from settings import get_settings

    argparse.ArgumentParser(prog="python -m consumer.embedding", description=main.__doc__).parse_args(argv)
    data = sys.stdin.buffer.read(get_settings().max_image_bytes + 1)
    try:
        embedder = Embedder(get_settings())
    except WeightsError as exc:
        print(json.dumps({"error": str(exc), "error_type": "model"}))
        return 2
    (vector,) = embedder.embed([data])
    if isinstance(vector, ImageError):
        print(json.dumps({"error": vector.detail, "error_type": str(vector.error_type)}))
        return 1
    print(json.dumps({"trunk": embedder.key, "vector": [round(float(x), 6) for x in vector]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
