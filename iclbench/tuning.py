"""Tuning hyperparameters on training tasks (never on evaluation tasks).

Learners with a few continuous hyperparameters (GD's learning rates) use full-batch L-BFGS
on a fixed sample of training tasks; discrete or badly scaled ones use a grid.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable

import torch

from iclbench.episode import Episode
from iclbench.learner import Learner
from iclbench.task import Task


def training_sample(task: Task, n: int, generator: torch.Generator, device, dtype=torch.float64) -> Episode:
    """`n` training tasks in `dtype` (float64 by default: tuning should not be limited by rounding)."""
    return task.sample(n, generator=generator, device=device).to(dtype=dtype)


def lbfgs(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], max_iter: int = 200,
          tolerance_change: float = 1e-15) -> float:
    """Minimise `loss_fn` over `params` in place with full-batch L-BFGS; returns the final loss.
    It stops after `max_iter` iterations, or once a step changes the loss or the parameters
    by less than `tolerance_change`."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                            tolerance_change=tolerance_change, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.detach()

    opt.step(closure)
    with torch.no_grad():
        return float(loss_fn())


def grid_search(candidates: Iterable[dict[str, Any]], loss_of: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """The candidate with the lowest finite loss."""
    best, best_loss = None, float("inf")
    for cand in candidates:
        loss = loss_of(cand)
        if loss == loss and loss < best_loss:  # skips NaN
            best, best_loss = cand, loss
    if best is None:
        raise RuntimeError("every candidate gave a non-finite loss")
    return best


class TunedLearner(Learner):
    """A learner whose hyperparameters `tuned` (config fields) are either fixed in its config or,
    left None, tuned in `fit` on training tasks (never on evaluation tasks).

    A subclass names the fields, gives its config a `tune_tasks` field and implements `tune`;
    `fit`, `hyperparameters` and the "not set" error come from here. Each value lives on the
    learner under the field's name; refitting starts from the config again."""

    tuned: ClassVar[tuple[str, ...]] = ()  # config fields tuned when None, in the order records list them

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self._from_config()

    def _from_config(self) -> None:
        for name in self.tuned:
            setattr(self, name, getattr(self.config, name))

    def fit(self, task: Task, *, generator: torch.Generator, device: torch.device) -> None:
        self._from_config()
        free = [name for name in self.tuned if getattr(self, name) is None]
        if free:
            episode = training_sample(task, self.config.tune_tasks, generator, device)
            for name, value in self.tune(episode, free).items():
                setattr(self, name, value)

    def tune(self, episode: Episode, free: list[str]) -> dict[str, Any]:
        """Values for the `free` fields, chosen on `episode` (float64 training tasks); the
        fixed ones are already set on the learner."""
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        return {name: getattr(self, name) for name in self.tuned}

    def require_tuned(self) -> None:
        """Raise, naming what is missing, if a hyperparameter is neither fixed nor fitted."""
        missing = [name for name in self.tuned if getattr(self, name) is None]
        if missing:
            raise RuntimeError(f"{self.name}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
                               f"call fit() or pass {', '.join(f'{m}=...' for m in missing)}")
