"""Task interface: a distribution over in-context regression tasks."""

from __future__ import annotations

from typing import ClassVar

import torch

from iclbench.component import Configurable
from iclbench.config import StrictConfig
from iclbench.episode import Episode
from iclbench.shapes import TaskShape


class TaskConfig(StrictConfig):
    """Base of every task family's config."""


class Task(Configurable):
    """A task family; `sample` draws B fresh tasks as one Episode.

    Subclasses set `name`, a nested `Config(TaskConfig)` and implement `sample`.
    """

    Config: ClassVar[type[TaskConfig]] = TaskConfig
    kind: ClassVar[str] = "task"

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device | str) -> Episode:
        """Draw `n` independent tasks on `device`, using only `generator` for randomness."""
        raise NotImplementedError(f"task {self.name!r} does not implement sample()")

    def episode_shape(self) -> TaskShape | None:
        """One task's episode dimensions from the config alone, without sampling (a config of
        `d=2000000000` must be refused, not allocated), and in `extra` the numbers per task that
        sampling holds besides the episode (teacher weights, `truth`). None (the default): the
        harness samples one task to measure it, if the config's sizes are small."""
        return None

    def scores(self, pred: torch.Tensor, episode: Episode) -> dict[str, torch.Tensor]:
        """Per-task scores (B,) besides the loss, each stored with its mean and CI in the record
        (e.g. a classification task's accuracy); none by default."""
        return {}
