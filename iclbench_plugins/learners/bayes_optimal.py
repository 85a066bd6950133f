"""Bayes-optimal predictors for linear tasks: posterior means under the task prior.

`bayes-ridge`: W ~ N(0, tau^2 I), the Gaussian prior of the linear-regression tasks.
`dmmse`: W uniform over a finite pool (Raventos et al. 2023), read from the training task.
Registered by `iclbench_plugins.learners.function_class_baselines`; this module has no hook.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench_plugins.learners.least_squares import min_norm_solution, ridge_predict

SIGMA_FLOOR = 1e-4  # dmmse's noise level when noise_std is 0: the posterior is then the best-fitting pool member(s)
CHUNK_ELEMENTS = 2**24  # dmmse's residuals are built this many numbers at a time (128 MiB in float64)


def _from_task(task, learner: str, field: str, *names: str) -> float:
    """`field` taken from the first of the task config's `names` it has, else a clear error."""
    cfg = getattr(task, "config", None)
    for n in names:
        if hasattr(cfg, n):
            return float(getattr(cfg, n))
    raise ValueError(f"{learner}: {field} is not set and task {getattr(task, 'name', task)!r} has no "
                     f"{' or '.join(names)} to take it from; pass {field}=...")


def posterior_mean(episode: iclbench.Episode, noise_std: float, prior_std: float) -> torch.Tensor:
    """(B, dy) posterior-mean prediction for y = W x + N(0, sigma^2), W ~ N(0, tau^2 I): ridge
    with lambda = sigma^2 / tau^2 on the unscaled sum of squares. sigma = 0 is the limit,
    minimum-norm least squares; for N < d the N x N (dual) system is solved, which stays well
    conditioned as lambda -> 0."""
    X, Y, q = (t.double() for t in (episode.context_x, episode.context_y, episode.query_x))
    lam = (noise_std / prior_std) ** 2
    N, d = episode.n_context, episode.dx
    if lam == 0:
        pred = torch.einsum("bdo,bd->bo", min_norm_solution(X, Y), q)
    elif N >= d:
        return ridge_predict(episode, lam / N)  # its lambda multiplies N
    else:
        K = X @ X.transpose(1, 2) + lam * torch.eye(N, dtype=X.dtype, device=X.device)  # (B, N, N)
        pred = torch.einsum("bd,bnd,bno->bo", q, X, torch.linalg.solve(K, Y))  # x_q^T X^T (X X^T + lam I)^-1 Y
    return pred.to(episode.query_x.dtype)


class BayesRidge(iclbench.Learner):
    """Bayes-optimal prediction (posterior mean) for Gaussian linear regression."""

    name = "bayes-ridge"

    class Config(iclbench.LearnerConfig):
        noise_std: float | None = Field(None, ge=0, description="sigma; None: the training task's noise_std")
        prior_std: float | None = Field(None, gt=0, description="tau; None: the training task's "
                                        "prior_std, teacher_scale or y_scale")

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.noise_std, self.prior_std = self.config.noise_std, self.config.prior_std

    def fit(self, task, *, generator, device) -> None:
        c = self.config
        self.noise_std = c.noise_std if c.noise_std is not None else _from_task(task, self.name, "noise_std", "noise_std")
        self.prior_std = (c.prior_std if c.prior_std is not None
                          else _from_task(task, self.name, "prior_std", "prior_std", "teacher_scale", "y_scale"))

    def hyperparameters(self) -> dict:
        return {"noise_std": self.noise_std, "prior_std": self.prior_std}

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        if self.noise_std is None or self.prior_std is None:
            raise RuntimeError("bayes-ridge: noise_std / prior_std are not set; call fit() or pass them")
        return posterior_mean(episode, self.noise_std, self.prior_std)


def discrete_posterior_mean(episode: iclbench.Episode, pool: torch.Tensor, noise_std: float) -> torch.Tensor:
    """(B, dy) posterior-mean prediction for y = W x + N(0, sigma^2) with W uniform over the
    pool (P, dy, d): sum_p post_p W_p x_q, post_p ∝ exp(-||Y - X W_p^T||^2 / (2 sigma^2)).

    The pool is streamed in chunks with a running log-sum-exp (max shift), so memory stays
    bounded for pools of millions; sigma below SIGMA_FLOOR is raised to it."""
    X, Y, q = (t.double() for t in (episode.context_x, episode.context_y, episode.query_x))
    pool = pool.to(device=X.device, dtype=torch.float64)
    B, N, dy = Y.shape
    inv2s2 = 1.0 / (2 * max(noise_std, SIGMA_FLOOR) ** 2)
    m = torch.full((B, 1), -torch.inf, dtype=X.dtype, device=X.device)  # (B, 1) running max log-weight
    total = torch.zeros(B, 1, dtype=X.dtype, device=X.device)  # (B, 1) sum of exp(logit - m)
    wbar = torch.zeros(B, dy, X.shape[2], dtype=X.dtype, device=X.device)  # (B, dy, d) sum of exp(logit - m) W_p
    step = max(1, CHUNK_ELEMENTS // (B * N * dy))
    for start in range(0, pool.shape[0], step):  # chunks of the pool, all tasks at once
        Wc = pool[start : start + step]  # (C, dy, d)
        resid = Y[:, None] - torch.einsum("bnd,cod->bcno", X, Wc)  # (B, C, N, dy)
        logit = -inv2s2 * resid.pow(2).sum((2, 3))  # (B, C) log-likelihood of each pool member
        m_new = torch.maximum(m, logit.amax(1, keepdim=True))  # (B, 1)
        p = torch.exp(logit - m_new)  # (B, C)
        shrink = torch.exp(m - m_new)  # (B, 1) rescales what was summed under the old max
        total = total * shrink + p.sum(1, keepdim=True)
        wbar = wbar * shrink[..., None] + torch.einsum("bc,cod->bod", p, Wc)
        m = m_new
    return torch.einsum("bod,bd->bo", wbar / total[..., None], q).to(episode.query_x.dtype)


class DiscreteMMSE(iclbench.Learner):
    """Bayes-optimal prediction when task weights are drawn uniformly from a finite pool
    (Raventos et al. 2023, dMMSE). `fit` reads the pool from the training task's
    `task_pool(device)` ((P, d), or (P, dy, d)); labels are assumed to be W x plus N(0, sigma^2)
    noise (not quadratic, sign or rescaled labels). noise_std 0 is replaced by SIGMA_FLOOR
    (1e-4): the posterior then sits on the pool member(s) that fit the context best."""

    name = "dmmse"
    prefix_by_padding = True  # a pair (0, 0) has the same likelihood under every pool member

    class Config(iclbench.LearnerConfig):
        noise_std: float | None = Field(None, ge=0, description=f"sigma (below {SIGMA_FLOOR:g} counts as {SIGMA_FLOOR:g}); "
                                        "None: the training task's noise_std")

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.pool: torch.Tensor | None = None
        self.noise_std = self.config.noise_std

    def fit(self, task, *, generator, device) -> None:
        if not callable(getattr(task, "task_pool", None)):
            raise TypeError(f"dmmse needs a task with a finite pool of weights (a task_pool(device) method, "
                            f"e.g. garg-linear with num_tasks set); task {getattr(task, 'name', task)!r} has none")
        pool = task.task_pool(device).detach()
        self.pool = pool[:, None, :] if pool.ndim == 2 else pool  # (P, dy, d)
        if self.config.noise_std is None:
            self.noise_std = _from_task(task, self.name, "noise_std", "noise_std")

    def hyperparameters(self) -> dict:
        return {"noise_std": self.noise_std, "pool_size": None if self.pool is None else self.pool.shape[0]}

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        if self.pool is None or self.noise_std is None:
            raise RuntimeError("dmmse: no task pool; call fit() on a task with task_pool()")
        if self.pool.shape[1:] != (episode.dy, episode.dx):
            raise ValueError(f"dmmse: pool weights have shape {tuple(self.pool.shape[1:])}, "
                             f"the episode needs (dy={episode.dy}, dx={episode.dx})")
        return discrete_posterior_mean(episode, self.pool, self.noise_std)


@iclbench.hookimpl
def register_learners(register) -> None:
    for cls in (BayesRidge, DiscreteMMSE):
        register(cls)
