"""Tuning hyperparameters on training tasks (never on evaluation tasks).

Learners with a few continuous hyperparameters (GD's learning rates) use full-batch L-BFGS
on a fixed sample of training tasks; discrete or badly scaled ones use a grid.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from iclbench.episode import Episode
from iclbench.task import Task


def training_sample(task: Task, n: int, generator: torch.Generator, device, dtype=torch.float64) -> Episode:
    """`n` training tasks in `dtype` (float64 by default: tuning should not be limited by rounding)."""
    return task.sample(n, generator=generator, device=device).to(dtype=dtype)


def lbfgs(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], max_iter: int = 200) -> float:
    """Minimise `loss_fn` over `params` in place with full-batch L-BFGS; returns the final loss."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                            tolerance_change=1e-15, history_size=20, line_search_fn="strong_wolfe")

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
