"""Learner interface: anything that maps an Episode's context and query to a prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from iclbench.component import Configurable
from iclbench.config import StrictConfig
from iclbench.episode import Episode
from iclbench.task import Task

if TYPE_CHECKING:
    from iclbench.workload import TaskShape, Workload


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


def placed(model: torch.nn.Module, like: torch.Tensor) -> torch.nn.Module:
    """`model` on `like`'s device and dtype, moved only when it is elsewhere: a model whose
    parameters are stacked for several seeds (torch.func.vmap) must not be moved."""
    weight = next(model.parameters(), None)
    if weight is not None and (weight.device != like.device or weight.dtype != like.dtype):
        model.to(device=like.device, dtype=like.dtype)
    return model
