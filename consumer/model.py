"""One model's classifier, for the command-line classifier, training's checks, tests and
benchmarks: the trunk and that model's head (consumer/serving.py builds them). Workers serve
every model and shadow at once through a serving.ModelSet instead."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from consumer.heads import TopK
from consumer.serving import Loader, ModelSet, load_model_set
from consumer.weights import WeightsError, int8_quantiser
from settings import Settings

if TYPE_CHECKING:
    from db.registry import ModelVersion

__all__ = ["Classifier", "TopK", "WeightsError", "load_classifier", "load_registered"]

log = logging.getLogger(__name__)


class Classifier:
    """A ModelSet serving one model: predict() gives its top-k per image."""

    def __init__(self, models: ModelSet, engine_name: str = ""):
        (self.served,) = models.production
        self.models, self.engine_name = models, engine_name
        self.name, self.version, self.categories = self.served.name, self.served.version, self.served.categories

    def predict(self, batch: torch.Tensor) -> list[list[TopK]]:
        """batch [N, 3, 224, 224] -> per image, the top-k categories by probability."""
        return self.models.predict(batch)[0].top_k


def load_classifier(settings: Settings, query=None) -> Classifier:
    """MODEL_NAME's classifier: a built-in ImageNet model, or the production version of a
    registered one (`query(names)`: the registry's {name: (production, shadow)}; default:
    DATABASE_URL's)."""
    one = settings.model_copy(update={"model_names": [settings.model_name]})
    models, _ = load_model_set(one, query)
    log.info(
        "model %s loaded, engine %s, %d threads", settings.model_name, settings.model_engine, settings.torch_threads
    )
    return Classifier(models.without_shadow(settings.model_name), settings.model_engine)


def load_registered(settings: Settings, mv: ModelVersion, s3=None) -> Classifier:
    """One registered version (any stage): its artefact from S3, verified, as a head."""
    torch.set_num_threads(settings.torch_threads)
    int8 = int8_quantiser(settings) if settings.model_engine == "onnxruntime-int8" else None
    loader = Loader(settings, s3, int8)
    served = loader.registered(mv)
    return Classifier(loader.model_set([served], []), settings.model_engine)
