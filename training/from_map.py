"""A category map that learns from labelled photos: `fit DATA --init-from NAME@N`.

A map (training/class_map.py) gives each ImageNet class to one category, or to none. Here each
class's probability is shared out by a mix M [C+1, 1000]: column i is a distribution of class i
over the C categories and "none" (the last row). With a temperature T on the ImageNet logits z,

    q = softmax(z / T) @ M[:C].T       (what consumer/heads.MixHead serves)

M starts as the map's choice exactly (a one-hot column per class; from a mix version: its mix)
and T at 1, so before training the head is the map. It is trained on the ImageNet logits of the
photos (each photo and its mirror, computed once with the base network), by the cross-entropy of
q normalised over the categories (mass on "none" counts for no category, as the map's does),
with early stopping on the validation photos (train._epochs; an epoch is one step on all of the
training photos), keeping the start if no step beats it there.

What keeps the classes the photos do not show: each class's change from its start is pulled
towards the mean change of its start category's classes (an L2 pull, `pull`). A class no photo
touches keeps its start choice, unless its whole category moved: then it moves with it. That
is what can be learnt from *other* classes: a user whose categories differ from the map's for a
whole group of classes (a category filed under another), which a plain pull towards the start
cannot carry to classes without photos (benchmarks/category_maps.py measures both).

The mix is kept on the simplex by projected gradient steps (the softmax of the stored shares
would be saturated at the map's one-hot start, and its gradients vanish); the stored shares
are log M, so MixHead's softmax gives M back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from consumer.heads import IMAGENET_CLASSES, MixHead
from consumer.images import preprocess
from training.train import _epochs, seed_everything

SHARE_FLOOR = 1e-12  # log(0) stored as log(1e-12): at most C * 1e-12 of a class leaks off its row


@dataclass
class MixOptions:
    seed: int = 0
    max_epochs: int = 200
    patience: int = 10
    # chosen on the coarse folder, 5 folds of held-out fine classes x split seeds 0-1, with the
    # map's own labels / every reptile_amphibian photo labelled sea_life / 15% of the fine
    # classes moved at random: mean held-out top-1 (the map alone: 0.958 / 0.8875 / 0.812) was
    # 0.965 / 0.952 / 0.810 at pull 1, 0.965 / 0.963 / 0.815 at pull 3, 0.965 / 0.946 / 0.815
    # at pull 10. A plain pull of each class towards its start (no category mean) got 0.892
    # with reptile_amphibian relabelled: it cannot reach the classes no photo shows.
    pull: float = 3.0
    lr: float = 0.05  # projected gradient step on the mix
    # the most one class's mix moves in a step: a photo the start gets wholly wrong has a
    # gradient that would flip its class at once, before its category's other classes follow
    max_step: float = 0.3
    temperature_lr: float = 0.05  # Adam on log T
    # of the normalised q in the loss: a photo the start gets wholly wrong has a bounded gradient
    smoothing: float = 0.01


@dataclass
class MixResult:
    shares: torch.Tensor  # [C+1, 1000], what model.pt holds (log of the mix)
    log_temperature: torch.Tensor  # []
    epochs: int
    best_epoch: int  # 0: no step beat the start on the validation photos
    val_loss: float
    seconds: float
    history: list[dict]


def start_of_map(class_category: torch.Tensor, categories: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mix, log temperature) equal to the map: class i wholly to its category, an unmapped one
    wholly to "none" (the last row); temperature 1."""
    rows = torch.where(class_category >= 0, class_category, torch.tensor(categories))
    return F.one_hot(rows, categories + 1).T.float().contiguous(), torch.zeros(())


def start_of_mix(shares: torch.Tensor, log_temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mix, log temperature) of a mix version: what it serves."""
    return torch.softmax(shares.detach().float(), dim=0), log_temperature.detach().float().reshape(())


def shares_of(mix: torch.Tensor) -> torch.Tensor:
    """The shares MixHead takes for a mix: log M (softmax(log M) is M, each column summing to 1)."""
    return torch.log(mix.detach().clamp_min(SHARE_FLOOR))


def head(shares: torch.Tensor, log_temperature: torch.Tensor, categories: list[str]) -> MixHead:
    """The served head, to evaluate exactly what workers will run."""
    return MixHead(shares, log_temperature, categories, trunk="base")


class Logits:
    """ImageNet logits as a head's trunk outputs (consumer/heads.TrunkOutputs), so a map or mix
    is evaluated with the workers' own head code."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def imagenet_logits(self, trunk: str) -> torch.Tensor:
        return self.logits

    def features(self, trunk: str) -> torch.Tensor:
        raise NotImplementedError("a map or mix reads the ImageNet logits only")


@torch.no_grad()
def imagenet_logits(base: nn.Module, images: list, idx: list[int], mirror: bool = False) -> torch.Tensor:
    """The base network's ImageNet logits [len(idx), 1000] of images[idx] (mirrored if asked),
    preprocessed as the workers do."""
    out = []
    for s in range(0, len(idx), 32):
        batch = torch.stack([preprocess(images[i]) for i in idx[s : s + 32]])
        out.append(base(torch.flip(batch, dims=[3]) if mirror else batch))
    return torch.cat(out) if out else torch.zeros(0, IMAGENET_CLASSES)


class _Mix(nn.Module):
    """The trained parameters (mix, log T) and the start the pull measures changes from."""

    def __init__(self, mix: torch.Tensor, log_temperature: torch.Tensor):
        super().__init__()
        self.mix = nn.Parameter(mix.clone())
        self.log_temperature = nn.Parameter(log_temperature.clone())
        self.register_buffer("start", mix.clone())
        group = mix.argmax(dim=0)  # each class's start row: its category, or none (the last)
        self.register_buffer("members", F.one_hot(group, mix.shape[0]).float())  # [1000, C+1]

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.log_temperature.exp(), dim=1) @ self.mix[:-1].T

    def pull(self) -> torch.Tensor:
        """Sum over classes of |change - its category's mean change|^2. The classes starting on
        "none" are pulled to no change (unmapped classes never move as a group), and so is every
        class's share of "none": the loss, normalised over the categories, does not see it, and
        it would drift."""
        change = self.mix - self.start
        mean = (change @ self.members) / self.members.sum(0).clamp_min(1)  # [C+1, C+1]: per start row
        mean[:, -1] = 0
        mean[-1, :] = 0
        return ((change - mean @ self.members.T) ** 2).sum()

    @torch.no_grad()
    def project(self) -> None:
        """Each column back onto the simplex (Euclidean projection), log T within [-3, 3]."""
        self.mix.copy_(_onto_simplex(self.mix))
        self.log_temperature.clamp_(-3.0, 3.0)


def _onto_simplex(v: torch.Tensor) -> torch.Tensor:
    """The nearest point of the probability simplex to each column of v (sort-based projection)."""
    u, _ = torch.sort(v, dim=0, descending=True)
    cumulative = u.cumsum(0) - 1
    k = torch.arange(1, v.shape[0] + 1, dtype=v.dtype)[:, None]
    rho = ((u - cumulative / k) > 0).to(v.dtype).cumsum(0).argmax(0, keepdim=True)  # the last row that holds
    theta = cumulative.gather(0, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0)


def _loss(q: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy of q normalised over the categories, smoothed towards uniform."""
    normalised = q / q.sum(1, keepdim=True).clamp_min(1e-12)
    normalised = normalised * (1 - smoothing) + smoothing / q.shape[1]
    return F.nll_loss(torch.log(normalised), labels)


def fit(
    train_logits: torch.Tensor,
    train_labels: torch.Tensor,
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    start: tuple[torch.Tensor, torch.Tensor],
    options: MixOptions,
    progress: Optional[Callable] = None,
    views: int = 2,
) -> MixResult:
    """Train the mix from `start` (start_of_map / start_of_mix) on the training logits, `views`
    rows per photo (the photo and its mirror), against the pull; early stopping on the
    validation logits. The data term weighs as many photos as there are, so `pull` is per photo."""
    started = time.monotonic()
    seed_everything(options.seed)
    model = _Mix(*start)
    photos = len(train_labels) / views
    mix_opt = torch.optim.SGD([model.mix], lr=options.lr)
    temperature_opt = torch.optim.Adam([model.log_temperature], lr=options.temperature_lr)

    def step() -> float:
        mix_opt.zero_grad()
        temperature_opt.zero_grad()
        data = _loss(model(train_logits), train_labels, options.smoothing)
        (data * photos + options.pull * model.pull()).backward()
        with torch.no_grad():  # no class's mix moves more than max_step in one step
            grad = model.mix.grad
            grad.mul_((options.max_step / options.lr / grad.norm(dim=0).clamp_min(1e-12)).clamp(max=1.0))
        mix_opt.step()
        temperature_opt.step()
        model.project()
        return float(data.detach())

    @torch.no_grad()
    def evaluate() -> float:
        return float(_loss(model(val_logits), val_labels, options.smoothing))

    history: list[dict] = []
    start_loss = evaluate()
    best_epoch, val_loss = _epochs(
        step, evaluate, model, options.max_epochs, options.patience, history, "mix", progress, start_loss=start_loss
    )
    return MixResult(
        shares_of(model.mix),
        model.log_temperature.detach().clone(),
        len(history),
        best_epoch,
        val_loss,
        time.monotonic() - started,
        history,
    )
