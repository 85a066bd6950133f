"""Exact linear solvers: minimum-norm least squares and ridge regression (lambda tuned)."""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import grid_search, task_losses, TunedLearner


def min_norm_solution(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """(B, d, dy) minimum-norm least-squares W^T for X (B, N, d), Y (B, N, dy), in float64.

    On CPU LAPACK's gelsy (rank-revealing QR, min-norm even when rank-deficient) is ~4x
    faster than the SVD driver gelsd; CUDA's lstsq lacks both, so the pseudo-inverse is used.
    gelsy as torch calls it returns wrong solutions when an input coordinate is zero in every
    context point ahead of a nonzero one (residual ~10 where 0 is exact): such batches go to gelsd.
    """
    X, Y = X.double(), Y.double()
    if X.device.type != "cpu":
        return torch.linalg.pinv(X) @ Y
    zero_column = bool((X == 0).all(dim=1).any())  # some task has a coordinate that is 0 in all its points
    return torch.linalg.lstsq(X, Y, driver="gelsd" if zero_column else "gelsy").solution


class LeastSquares(iclbench.Learner):
    """The minimum-norm least-squares fit: exact whenever N >= d and labels are noiseless."""

    name = "least-squares"
    prefix_by_padding = True  # pairs (0, 0) change neither the fit nor its minimum norm

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        w = min_norm_solution(episode.context_x, episode.context_y)  # (B, d, dy)
        pred = torch.einsum("bdo,bd->bo", w, episode.query_x.double())
        return pred.to(episode.query_x.dtype)


def ridge_predict(episode: iclbench.Episode, lam: float) -> torch.Tensor:
    """Minimiser of 1/(2N) sum ||W x_i - y_i||^2 + lam/2 ||W||^2 applied to the query (float64 inside)."""
    X, Y, q = (t.double() for t in (episode.context_x, episode.context_y, episode.query_x))
    N, d = episode.n_context, episode.dx
    gram = X.transpose(1, 2) @ X + N * lam * torch.eye(d, dtype=X.dtype, device=X.device)  # (B, d, d)
    a = torch.linalg.solve(gram, q[..., None])  # (B, d, 1) = (X^T X + N lam I)^-1 x_q
    return torch.einsum("bno,bnd,bd->bo", Y, X, a[..., 0]).to(episode.query_x.dtype)


class Ridge(TunedLearner):
    """Ridge regression on each task's context, its penalty tuned on training tasks."""

    name = "ridge"
    tuned = ("lam",)

    class Config(iclbench.LearnerConfig):
        lam: float | None = Field(None, ge=0, description="fixed lambda; None: tuned on training tasks")
        grid: list[float] = Field(default_factory=lambda: [10.0**e for e in range(-8, 3)])
        tune_tasks: int = Field(8192, ge=1)

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        return grid_search(({"lam": lam} for lam in self.config.grid),
                           lambda c: float(task_losses(ridge_predict(episode, c["lam"]), episode.query_y).mean()))

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        self.require_tuned()
        return ridge_predict(episode, self.lam)


@iclbench.hookimpl
def register_learners(register) -> None:
    register(LeastSquares)
    register(Ridge)
