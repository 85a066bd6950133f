"""Learner interface: anything that maps an Episode's context and query to a prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from iclbench.component import Configurable
from iclbench.config import StrictConfig
from iclbench.episode import Episode
from iclbench.shapes import TaskShape, Workload
from iclbench.task import Task

if TYPE_CHECKING:
    from iclbench.training import TrainConfig


class LearnerConfig(StrictConfig):
    """Base of every learner's config."""


class Learner(Configurable):
    """An in-context learner.

    `fit` may meta-train or tune hyperparameters on the *training* task distribution; it
    never sees evaluation tasks. `predict` returns the (B, dy) query predictions and should
    stay differentiable in `episode.query_x` so sensitivities can be taken with autograd.

    During evaluation `predict` is handed a private copy of its tasks whose `query_y` is NaN
    (the targets are the metric's alone; its shape and dtype are the prediction's), and
    writing into that copy fails the learner's record (`iclbench.isolation`).
    """

    Config: ClassVar[type[LearnerConfig]] = LearnerConfig
    kind: ClassVar[str] = "learner"
    trains: ClassVar[bool] = False
    """True for a learner whose `fit` meta-trains a model through `iclbench.meta_train`; its
    config then has a `train` field (a `TrainConfig`), which `reproduce` pre-trains and budgets."""
    prefix_by_padding: ClassVar[bool] = False
    """True when context pairs (0, 0) change nothing the learner predicts (minimum-norm least
    squares, a discrete posterior): its error against context length is then one batched call
    with the pairs beyond each prefix zeroed, instead of one call per prefix length."""

    def fit(self, task: Task, *, generator: torch.Generator, device: torch.device | str) -> None:
        """Optional: meta-train or tune on `task`'s distribution. The default does nothing."""

    def hyperparameters(self) -> dict:
        """Values `fit` chose (tuned rates, lambdas); stored with every result. JSON-able."""
        return {}

    def fit_info(self) -> dict:
        """What `fit` produced beyond hyperparameters (a training curve, timings); JSON-able."""
        return {}

    def workload(self, shape: TaskShape, n_tasks: int, batch_size: int, dtype_bytes: int) -> Workload | None:
        """Estimated peak memory (and time) of fitting on tasks of `shape` and predicting
        `n_tasks` of them `batch_size` at a time, from the config alone, so that runs which
        cannot fit are refused before they start. None (the default): unknown, never refused."""
        return None

    def predict(self, episode: Episode) -> torch.Tensor:
        """(B, dy) prediction for each task's query, from its context and `query_x` only."""
        raise NotImplementedError(f"learner {self.name!r} does not implement predict()")

    def train_config(self) -> "TrainConfig | None":
        """The meta-training settings of a learner that `trains`, else None."""
        return self.config.train if self.trains else None  # type: ignore[attr-defined]

    def predict_prefixes(self, episode: Episode) -> torch.Tensor | None:
        """Optional: (B, N, dy), at [:, k - 1] the query prediction from the first k context pairs,
        every k in one pass (a running sum: averaging, one GD step). None (the default): not
        available, and the error against context length asks `predict` once per prefix."""
        return None

    def predict_positions(self, episode: Episode) -> torch.Tensor | None:
        """Optional, for sequence episodes: (B, T-1, D), at [:, t-1] the prediction of s_{t+1} from
        s_1..s_t, every position in one causal pass. None (the default): `predict` is asked once
        per position (`iclbench.positions`)."""
        return None


def placed(model: torch.nn.Module, like: torch.Tensor) -> torch.nn.Module:
    """`model` on `like`'s device and dtype, moved only when it is elsewhere: a model whose
    parameters are stacked for several seeds (torch.func.vmap) must not be moved."""
    weight = next(model.parameters(), None)
    if weight is not None and (weight.device != like.device or weight.dtype != like.dtype):
        model.to(device=like.device, dtype=like.dtype)
    return model
