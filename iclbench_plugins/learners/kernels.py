"""Kernel learners on the context: RBF kernel ridge regression and the Nadaraya-Watson smoother.

Bandwidth (and ridge lambda) are picked by grid search on training tasks; the bandwidth grid
is relative to the median pairwise distance of training inputs, so it adapts to the task scale.
"""

from __future__ import annotations

import itertools

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import compute_seconds, grid_search, task_losses, TaskShape, TunedLearner, Workload

BANDWIDTH_FACTORS = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


def sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, n, m) squared Euclidean distances between rows of a (B, n, d) and b (B, m, d)."""
    return (a[:, :, None] - b[:, None]).pow(2).sum(-1)


def median_distance(episode: iclbench.Episode) -> float:
    """Median distance between context inputs, the scale the bandwidth grid is relative to."""
    d2 = sq_dists(episode.context_x, episode.context_x)  # (B, N, N)
    off = ~torch.eye(episode.n_context, dtype=torch.bool, device=episode.device)
    return float(d2[:, off].sqrt().median())


def pairwise_workload(shape: TaskShape, tasks: int, passes: float, name: str) -> Workload:
    """`passes` over `tasks` tasks, each pass forming the (tasks, N, N, dx) differences of
    `sq_dists` over the context and their squares in float64."""
    N, dx = shape.n_context, shape.dx
    elems, flops = 2 * N * N * dx, 3 * N * N * dx + N**3  # distances, and the solve
    return Workload(tasks * elems * 8, compute_seconds(passes * tasks * flops, elements=passes * tasks * elems),
                    f"{name}={tasks} tasks x N={N} x N x dx={dx}")


def kernel_ridge_predict(episode: iclbench.Episode, bandwidth: float, lam: float) -> torch.Tensor:
    """k_q^T (K + lam I)^-1 Y, in float64: wide bandwidths make K nearly singular."""
    X, Y, q = (t.double() for t in (episode.context_x, episode.context_y, episode.query_x))
    K = torch.exp(-sq_dists(X, X) / (2 * bandwidth**2))  # (B, N, N)
    K = K + lam * torch.eye(episode.n_context, dtype=X.dtype, device=X.device)
    alpha = torch.linalg.solve(K, Y)  # (B, N, dy)
    kq = torch.exp(-sq_dists(q[:, None], X)[:, 0] / (2 * bandwidth**2))  # (B, N)
    return torch.einsum("bn,bno->bo", kq, alpha).to(episode.query_x.dtype)


def smoother_predict(episode: iclbench.Episode, bandwidth: float) -> torch.Tensor:
    X, Y, q = episode.context_x, episode.context_y, episode.query_x
    w = torch.softmax(-sq_dists(q[:, None], X)[:, 0] / (2 * bandwidth**2), dim=-1)  # (B, N)
    return torch.einsum("bn,bno->bo", w, Y)


class KernelRidge(TunedLearner):
    """RBF kernel ridge regression: k_q^T (K + lam I)^-1 y."""

    name = "kernel-ridge"
    tuned = ("bandwidth", "lam")

    class Config(iclbench.LearnerConfig):
        bandwidth: float | None = Field(None, gt=0, description="fixed RBF bandwidth; None: tuned")
        lam: float | None = Field(None, gt=0, description="fixed ridge lambda; None: tuned")
        lam_grid: list[float] = Field(default_factory=lambda: [10.0**e for e in range(-10, 2)])
        tune_tasks: int = Field(4096, ge=1)

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        bws = [f * median_distance(episode) for f in BANDWIDTH_FACTORS] if "bandwidth" in free else [self.bandwidth]
        lams = self.config.lam_grid if "lam" in free else [self.lam]
        return grid_search(({"bandwidth": b, "lam": lam} for b, lam in itertools.product(bws, lams)),
                           lambda p: float(task_losses(kernel_ridge_predict(episode, **p), episode.query_y).mean()))

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload:
        """Grid search on the tuning tasks, then predictions (with sensitivities) chunk by chunk."""
        c = self.config
        predict = pairwise_workload(shape, batch_size, 3 * n_tasks / batch_size, "batch_size")
        if c.bandwidth is not None and c.lam is not None:
            return predict
        candidates = (1 if c.bandwidth else len(BANDWIDTH_FACTORS)) * (1 if c.lam else len(c.lam_grid))
        return pairwise_workload(shape, c.tune_tasks, candidates + 1, "tune_tasks") | predict

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        self.require_tuned()
        return kernel_ridge_predict(episode, self.bandwidth, self.lam)


class KernelSmoother(TunedLearner):
    """Nadaraya-Watson: softmax(-||x_q - x_i||^2 / (2 h^2)) weighted mean of the labels."""

    name = "kernel-smoother"
    tuned = ("bandwidth",)

    class Config(iclbench.LearnerConfig):
        bandwidth: float | None = Field(None, gt=0, description="fixed RBF bandwidth; None: tuned")
        tune_tasks: int = Field(4096, ge=1)

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        med = median_distance(episode)
        return grid_search(({"bandwidth": f * med} for f in BANDWIDTH_FACTORS),
                           lambda p: float(task_losses(smoother_predict(episode, **p), episode.query_y).mean()))

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload | None:
        """Tuning's median distance forms all context pairs; predictions only query-context ones
        (as small as the evaluation tasks themselves)."""
        if self.config.bandwidth is not None:
            return None
        return pairwise_workload(shape, self.config.tune_tasks, 1, "tune_tasks")

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        self.require_tuned()
        return smoother_predict(episode, self.bandwidth)


@iclbench.hookimpl
def register_learners(register) -> None:
    register(KernelRidge)
    register(KernelSmoother)
