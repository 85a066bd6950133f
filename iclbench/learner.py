"""Learner interface: anything that maps an Episode's context and query to a prediction."""

from __future__ import annotations

from typing import ClassVar

import torch

from iclbench.component import Configurable
from iclbench.config import StrictConfig
from iclbench.episode import Episode
from iclbench.task import Task


class LearnerConfig(StrictConfig):
    """Base of every learner's config."""


class Learner(Configurable):
    """An in-context learner.

    `fit` may meta-train or tune hyperparameters on the *training* task distribution; it
    never sees evaluation tasks. `predict` returns the (B, dy) query predictions and should
    stay differentiable in `episode.query_x` so sensitivities can be taken with autograd.
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

    def predict(self, episode: Episode) -> torch.Tensor:
        """(B, dy) prediction for each task's query."""
        raise NotImplementedError(f"learner {self.name!r} does not implement predict()")
