"""What a worker serves, built in one straight path, top to bottom:

1. resolve: which versions to serve: each of MODEL_NAMES (a built-in ImageNet model, or the
   registry's production version of a model of your own) and every shadow version of them;
2. fetch: each registered version's artefact from S3, refused unless its SHA-256 is the
   registry's (common/artefacts.py);
3. trunk: the base network's trunk, built once in MODEL_ENGINE (consumer/trunk.py);
4. heads: each version becomes a head on that trunk (consumer/heads.py); a version
   fine-tuned with `--unfreeze` brings a trunk of its own.

`Loader` keeps the trunks, so the hot swap (consumer/rollout.py) repeats 2 and 4 for a
changed version and never rebuilds a trunk. `ModelSet` is one immutable snapshot of what
serves: a batch runs on one snapshot from start to end, whatever is swapped in meanwhile.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Optional

import torch

from consumer.heads import ConvHead, Head, LinearHead, MapHead, MixHead, TopK, top_k
from consumer.trunk import Trunk, build_trunk, trunk_key
from consumer.weights import WeightsError, imagenet_categories, load_base_model
from settings import BUILTIN_MODELS, Settings

if TYPE_CHECKING:
    from db.registry import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One version of one model, as a head. version 0: a built-in ImageNet model."""

    name: str
    version: int
    head: Head
    stage: str = "production"  # or "shadow": run on every image, never the answer

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def categories(self) -> list[str]:
        return self.head.categories


class _Bank:
    """Every ConvHead on one trunk as one convolution (their weights stacked): ImageNet's
    1000 classes and three custom heads cost one 1024-output convolution, not four calls."""

    def __init__(self, heads: list[ConvHead]):
        self.trunk = heads[0].trunk
        weight = torch.cat([h.weight for h in heads])
        bias = torch.cat([h.bias for h in heads])
        self.fused = ConvHead(weight, bias, [c for h in heads for c in h.categories], self.trunk)
        self.slices: dict[int, slice] = {}
        start = 0
        for h in heads:
            self.slices[id(h)] = slice(start, start + len(h.categories))
            start += len(h.categories)


def _banks(served: tuple[Served, ...], trunks: dict[str, Trunk]) -> dict[str, _Bank]:
    """A bank per trunk with more than one ConvHead to run on it (maps read ImageNet's)."""
    by_trunk: dict[str, dict[int, ConvHead]] = {}
    for s in served:
        head = s.head
        if isinstance(head, (MapHead, MixHead)):
            head = trunks[head.trunk].classifier
        if isinstance(head, ConvHead):
            by_trunk.setdefault(head.trunk, {})[id(head)] = head
    return {key: _Bank(list(heads.values())) for key, heads in by_trunk.items() if len(heads) > 1}


class _Outputs:
    """One chunk's trunk outputs, each computed the first time a head asks for it."""

    def __init__(self, batch: torch.Tensor, trunks: dict[str, Trunk], banks: Optional[dict[str, _Bank]] = None):
        self.batch, self.trunks, self.banks = batch, trunks, banks or {}
        self._features: dict[str, torch.Tensor] = {}
        self._logits: dict[int, torch.Tensor] = {}  # by head: ImageNet's is read by maps too
        self._embeddings: dict[str, torch.Tensor] = {}

    def features(self, trunk: str) -> torch.Tensor:
        if trunk not in self._features:
            with torch.inference_mode():
                self._features[trunk] = self.trunks[trunk].run(self.batch)
        return self._features[trunk]

    def logits(self, head: ConvHead) -> torch.Tensor:
        if id(head) not in self._logits:
            bank = self.banks.get(head.trunk)
            if bank is not None and id(head) in bank.slices:
                fused = bank.fused.logits(self.features(head.trunk))
                self._logits.update({h: fused[:, part] for h, part in bank.slices.items()})
            else:
                self._logits[id(head)] = head.logits(self.features(head.trunk))
        return self._logits[id(head)]

    def imagenet_logits(self, trunk: str) -> torch.Tensor:
        return self.logits(self.trunks[trunk].classifier)

    def embedding(self, trunk: str) -> torch.Tensor:
        """The trunk's feature map averaged over its positions, at unit length: [N, 512]."""
        if trunk not in self._embeddings:
            with torch.inference_mode():
                pooled = self.features(trunk).float().mean(dim=(2, 3))
                self._embeddings[trunk] = torch.nn.functional.normalize(pooled, dim=1)
        return self._embeddings[trunk]


@dataclass(frozen=True)
class Prediction:
    served: Served
    top_k: list[list[TopK]]  # per image of the chunk
    seconds: float  # its head, and any trunk only it needed


@dataclass(frozen=True)
class ModelSet:
    """The production version of each served model, and the shadow versions."""

    production: tuple[Served, ...]
    shadows: tuple[Served, ...]
    trunks: dict[str, Trunk]
    top_k: int = 5
    embed: Optional[str] = None  # the trunk whose pooled output is each image's embedding (EMBEDDINGS)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.production]

    @cached_property
    def _banks(self) -> dict[str, _Bank]:
        return _banks((*self.production, *self.shadows), self.trunks)

    def predict(self, batch: torch.Tensor) -> list[Prediction]:
        """batch [N, 3, 224, 224] -> each served version's top-k per image: the trunk once,
        then every head (production first, so the trunk's time is production's)."""
        return self._heads(_Outputs(batch, self.trunks, self._banks))

    def predict_and_embed(self, batch: torch.Tensor, trunk: str) -> tuple[list[Prediction], torch.Tensor]:
        """predict(), and each image's embedding from the same pass: `trunk`'s feature map
        averaged over its positions and L2-normalised, [N, 512] (what similar-image search
        stores: a dot product of two is their cosine). A trunk no head runs on costs a pass."""
        outputs = _Outputs(batch, self.trunks, self._banks)
        return self._heads(outputs), outputs.embedding(trunk)

    def _heads(self, outputs: _Outputs) -> list[Prediction]:
        out = []
        for served in (*self.production, *self.shadows):
            t = time.perf_counter()
            probs = served.head.probabilities(outputs)
            out.append(Prediction(served, top_k(probs, served.categories, self.top_k), time.perf_counter() - t))
        return out

    def with_version(self, served: Served, trunks: dict[str, Trunk]) -> ModelSet:
        """This set with `served` production (replacing its name's) or shadow (replacing its
        name's shadow); `trunks`: the loader's, which may have gained one."""
        if served.stage == "production":
            production = tuple(served if s.name == served.name else s for s in self.production)
            return replace(self, production=production, trunks=dict(trunks))
        shadows = tuple(s for s in self.shadows if s.name != served.name) + (served,)
        return replace(self, shadows=shadows, trunks=dict(trunks))

    def without_shadow(self, name: str) -> ModelSet:
        return replace(self, shadows=tuple(s for s in self.shadows if s.name != name))


class Loader:
    """Builds heads on trunks it keeps: steps 2-4 of the path, for one version at a time."""

    def __init__(self, settings: Settings, s3=None, int8: Optional[Callable] = None):
        self.settings, self._s3 = settings, s3
        self._int8 = int8
        self.trunks: dict[str, Trunk] = {}
        self._bases: dict[str, str] = {}  # base model name -> its trunk's key

    def base(self, base_model: str) -> Trunk:
        """The base network's trunk (built on first use: the export and int8 are cached on disk)."""
        if base_model not in self._bases:
            model, source, _ = load_base_model(self.settings, base_model)
            key = trunk_key(base_model, model)
            self.trunks[key] = build_trunk(self.settings, model, key, imagenet_categories(base_model), self._int8)
            self._bases[base_model] = key
            log.info("trunk %s from %s, engine %s", key, source, self.settings.model_engine)
        return self.trunks[self._bases[base_model]]

    def builtin(self, name: str) -> Served:
        """ImageNet's own classifier: the head every base trunk comes with."""
        return Served(name, 0, self.base(name).classifier)

    def registered(self, mv: ModelVersion, stage: str = "production") -> Served:
        """A version from the registry as a head: its artefact fetched and verified, then
        attached by kind (db/registry.KINDS)."""
        from common.artefacts import ArtefactError, get_verified_weights

        try:
            data = get_verified_weights(self._s3 or self.settings.s3_client(), mv.uri, mv.sha256)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            head = self._head(mv, state)
        except ArtefactError as exc:
            raise WeightsError(f"{mv.ref}: {exc}") from exc
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(f"{mv.ref}: cannot load its artefact: {exc}") from exc
        log.info("%s (%s, %s) attached to trunk %s", mv.ref, mv.kind, stage, head.trunk)
        return Served(mv.name, mv.version, head, stage)

    def _head(self, mv: ModelVersion, state: dict) -> Head:
        base = self.base(mv.base_model)
        if mv.kind == "map":
            return MapHead(mv.categories, state["class_category"], base.key)
        if mv.kind == "mix":
            return MixHead(state["shares"], state["log_temperature"], mv.categories, base.key)
        if mv.kind == "linear":
            return LinearHead(state["weight"], state["bias"], mv.categories, base.key)
        import torchvision

        model = getattr(torchvision.models, mv.base_model)(weights=None, num_classes=len(mv.categories))
        model.load_state_dict(state, strict=True)
        return self.network(model, mv.base_model, mv.categories)

    def network(self, model: torch.nn.Module, base_model: str, categories: list[str]) -> ConvHead:
        """A whole network's head: on the base trunk when its features are the base's (frozen
        training), else on a trunk of its own (fine-tuned with --unfreeze: a second pass)."""
        self.base(base_model)
        key = trunk_key(base_model, model)
        if key not in self.trunks:
            log.warning("a version of %s changed the trunk (fine-tuned): it runs on a trunk of its own", base_model)
            self.trunks[key] = build_trunk(self.settings, model.eval(), key, list(categories), self._int8)
        return ConvHead.of(model.state_dict(), categories, key)

    def model_set(self, production: list[Served], shadows: list[Served]) -> ModelSet:
        """What serves; with EMBEDDINGS on, EMBEDDING_MODEL's trunk (built if no head needed it)
        gives every image's embedding."""
        embed = self.base(self.settings.embedding_model).key if self.settings.embeddings else None
        return ModelSet(tuple(production), tuple(shadows), dict(self.trunks), self.settings.top_k, embed)


def resolve(
    settings: Settings, query: Optional[Callable[[list[str]], dict]] = None
) -> list[tuple[str, Optional[ModelVersion], Optional[ModelVersion]]]:
    """Step 1: (name, production, shadow) per served model; built-in names have neither.
    `query(names)` reads the registry ({name: (production, shadow)}); a served registered
    name with no production version is a WeightsError saying how to get one."""
    names = settings.served_models
    registered = [n for n in names if n not in BUILTIN_MODELS]
    found = query(registered) if registered else {}
    out = []
    for name in names:
        if name in BUILTIN_MODELS:
            out.append((name, None, None))
            continue
        production, shadow = found.get(name, (None, None))
        if production is None:
            raise WeightsError(
                f"model {name} has no production version in the registry: train one with "
                f"`python -m training fit DATA --name {name}` (or `training map {name} --classes CSV`) "
                f"and promote it with `python -m training promote {name}@N`"
            )
        out.append((name, production, shadow))
    return out


def registry_query(settings: Settings) -> Callable[[list[str]], dict]:
    from db.connection import in_transaction
    from db.registry import serving_all

    return lambda names: in_transaction(settings, lambda conn: serving_all(conn, names))


def load_model_set(settings: Settings, query: Optional[Callable[[list[str]], dict]] = None) -> tuple[ModelSet, Loader]:
    """The worker's start: the four steps for every served model and shadow."""
    from consumer.weights import int8_quantiser

    torch.set_num_threads(settings.torch_threads)
    wanted = resolve(settings, query or registry_query(settings))
    int8 = int8_quantiser(settings) if settings.model_engine == "onnxruntime-int8" else None
    loader = Loader(settings, int8=int8)
    production, shadows = [], []
    for name, prod, shadow in wanted:
        production.append(loader.builtin(name) if prod is None else loader.registered(prod))
        if shadow is not None:
            try:
                shadows.append(loader.registered(shadow, "shadow"))
            except WeightsError as exc:  # a shadow never stops a worker: production serves
                log.error("cannot shadow %s: %s", shadow.ref, exc)
    return loader.model_set(production, shadows), loader
