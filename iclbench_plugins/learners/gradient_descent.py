"""Gradient descent and GD++ as in-context learners (von Oswald et al. 2023, Sec. 2-3).

`gd`: K steps on L(W) = 1/(2N) sum_i ||W x_i - y_i||^2 from W0 = 0, applied to the query.
`gd++`: before each step's inputs move on, they are transformed x <- (I - gamma X^T X / N) x
(context and query alike), a curvature correction that trained recurrent LSA layers learn.
Learning rates (and gammas) are tuned on training tasks by L-BFGS, shared or one per step.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import (
    compute_seconds, episode_bytes, lbfgs, running_means, TAPE_FACTOR, task_losses, TaskShape,
    training_sample, Workload)

Rate = float | list[float] | None
LBFGS_EVALUATIONS = 250  # loss evaluations of one `lbfgs` call at most (its max_iter * 5 / 4)
RATE_BYTES = 48  # one per-step rate as a Python float in a list, and in a tensor


def gd_predict(episode: iclbench.Episode, etas: torch.Tensor, gammas: torch.Tensor | None = None,
               clip: float | None = None) -> torch.Tensor:
    """(B, dy) query prediction after len(etas) GD (or GD++ if `gammas`) steps.

    Runs in the token view that LSA layers implement: every label y_j (the query's starts
    at 0) becomes the residual y_j - W_k x_j, and the prediction is minus the query's entry.
    With `clip`, every token value is clipped to [-clip, clip] after each step, as an LSA
    stack with token clipping does (the reference code clips deep models and their GD++ alike).
    """
    X, R, q = episode.context_x, episode.context_y, episode.query_x  # (B,N,d), (B,N,dy), (B,d)
    N = episode.n_context
    rq = torch.zeros_like(episode.query_y)  # (B, dy) query's label entry
    for k in range(etas.shape[0]):
        dW = (etas[k] / N) * torch.einsum("bno,bnd->bod", R, X)  # (B, dy, d) = -eta grad L(W_k)
        R = R - torch.einsum("bod,bnd->bno", dW, X)
        rq = rq - torch.einsum("bod,bd->bo", dW, q)
        if gammas is not None:
            S = X.transpose(1, 2) @ X / N  # (B, d, d) input covariance of the current inputs
            X = X - gammas[k] * (X @ S)
            q = q - gammas[k] * torch.einsum("bde,be->bd", S, q)
        if clip is not None:
            X, R, q, rq = (t.clamp(-clip, clip) for t in (X, R, q, rq))
    return -rq


def gd_step_cost(shape: TaskShape, curvature: bool) -> tuple[int, int]:
    """(numbers kept for the backward pass, flops) per task of one `gd_predict` step: the new
    residuals and update with their products (GD++: also the inputs and their covariance)."""
    N, dx, dy = shape.n_context, shape.dx, shape.dy
    elems, flops = 2 * (N * dy + dy * dx + dy), 4 * N * dx * dy + 2 * dx * dy
    if curvature:
        elems, flops = elems + 3 * N * dx + 2 * dx * dx + 2 * dx, flops + 4 * N * dx * dx + 2 * dx * dx
    return elems, flops


def _per_step(value: Rate) -> list[float] | None:
    """Configured rates as a list: one per step, or a single shared one (expanded only when
    used, so a huge `steps` is refused by its workload estimate instead of allocated here)."""
    if value is None:
        return None
    return [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]


class GradientDescent(iclbench.Learner):
    name = "gd"

    class Config(iclbench.LearnerConfig):
        steps: int = Field(1, ge=1, description="K, the number of GD steps")
        per_step: bool = Field(False, description="tune one learning rate per step instead of one shared")
        eta: Rate = Field(None, description="fixed learning rate(s); None: tuned on training tasks")
        tune_tasks: int = Field(10000, ge=1, description="training tasks the rates are tuned on")
        clip: float | None = Field(None, gt=0, description="clip token values to [-clip, clip] after each step")

        @model_validator(mode="after")
        def _check_lengths(self):
            for field in ("eta", "gamma"):
                v = getattr(self, field, None)
                if isinstance(v, list) and len(v) != self.steps:
                    raise ValueError(f"{field} has {len(v)} values but steps is {self.steps}")
            return self

    curvature_correction = False

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.etas = _per_step(self.config.eta)
        self.gammas = _per_step(getattr(self.config, "gamma", None))

    @property
    def tuned(self) -> bool:
        return self.etas is not None and (self.gammas is not None or not self.curvature_correction)

    def fit(self, task, *, generator, device) -> None:
        self.etas = _per_step(self.config.eta)  # refitting starts from the config again
        self.gammas = _per_step(getattr(self.config, "gamma", None))
        if self.tuned:
            return
        ep = training_sample(task, self.config.tune_tasks, generator, device)
        K = self.config.steps
        S = ep.context_x.transpose(1, 2) @ ep.context_x / ep.n_context  # (B, d, d)
        eta0 = 1.0 / float(torch.linalg.eigvalsh(S)[:, -1].mean())  # stable start: eta * lambda_max ~ 1
        f64 = dict(dtype=torch.float64, device=device)
        eta = torch.tensor(self.etas or [eta0], **f64)
        gamma = torch.tensor(self.gammas or [0.0], **f64) if self.curvature_correction else None
        eta, gamma = self._tune(ep, eta, gamma)  # one shared rate first
        if self.config.per_step and K > 1:
            # GD's prediction is symmetric in the per-step rates: start off the diagonal
            spread = torch.logspace(0.1, -0.1, K, **f64)
            cand = self._tune(ep, eta.expand(K) * (spread if self.etas is None else 1),
                              None if gamma is None else gamma.expand(K) * (spread if self.gammas is None else 1))
            # non-convex, and large per-step rates can overfit the tuning tasks: keep the
            # per-step rates only if they also win on fresh validation tasks
            val = training_sample(task, self.config.tune_tasks, generator, device)
            if self._loss(val, *cand) < self._loss(val, eta, gamma):
                eta, gamma = cand
        self.etas = eta.expand(K).tolist()
        self.gammas = None if gamma is None else gamma.expand(K).tolist()

    def _loss(self, ep: iclbench.Episode, eta: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
        K = self.config.steps
        g = None if gamma is None else gamma.expand(K)
        return task_losses(gd_predict(ep, eta.expand(K), g, self.config.clip), ep.query_y).mean()

    def _tune(self, ep: iclbench.Episode, eta: torch.Tensor, gamma: torch.Tensor | None):
        """L-BFGS over whichever of eta / gamma the config leaves free; returns (eta, gamma)."""
        free = []
        if self.etas is None:
            free.append(eta := eta.clone().requires_grad_(True))
        if gamma is not None and self.gammas is None:
            free.append(gamma := gamma.clone().requires_grad_(True))
        lbfgs(free, lambda: self._loss(ep, eta, gamma))
        return eta.detach(), None if gamma is None else gamma.detach()

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload:
        """Tuning keeps an autograd tape over all K steps of `tune_tasks` float64 tasks; so do
        predictions, `batch_size` tasks at a time, when sensitivities are taken."""
        K, tune = self.config.steps, self.config.tune_tasks
        elems, flops = gd_step_cost(shape, self.curvature_correction)
        rates = K * RATE_BYTES * (2 if self.curvature_correction else 1)
        size = f"N={shape.n_context} x dx={shape.dx}"
        predict = Workload(TAPE_FACTOR * K * batch_size * elems * dtype_bytes + rates,
                           compute_seconds(3 * n_tasks * K * flops, 20 * K * math.ceil(n_tasks / batch_size),
                                           2 * n_tasks * K * elems),
                           f"steps={K} x batch_size={batch_size} tasks x {size}")
        if self.tuned:
            return predict
        evals = LBFGS_EVALUATIONS * (2 if self.config.per_step and K > 1 else 1)
        tuning = Workload(TAPE_FACTOR * K * tune * elems * 8 + episode_bytes(shape, 2 * tune, 8) + rates,
                          compute_seconds(3 * evals * tune * K * flops, 20 * evals * K, 2 * evals * tune * K * elems),
                          f"steps={K} x tune_tasks={tune} tasks x {size}")
        return tuning | predict

    def rates(self) -> tuple[list[float], list[float] | None]:
        """Per-step learning rates and (GD++) gammas, after `fit` or as configured."""
        if not self.tuned:
            raise RuntimeError(f"{self.name}: rates are not set; call fit() or pass them in the config")
        K = self.config.steps
        full = lambda v: list(v) * K if len(v) == 1 else list(v)  # noqa: E731  a shared rate, once per step
        return full(self.etas), None if self.gammas is None else full(self.gammas)

    def hyperparameters(self) -> dict:
        etas, gammas = self.rates()
        return {"eta": etas} if gammas is None else {"eta": etas, "gamma": gammas}

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        etas, gammas = self.rates()
        t = lambda v: torch.tensor(v, dtype=episode.context_x.dtype, device=episode.device)  # noqa: E731
        return gd_predict(episode, t(etas), None if gammas is None else t(gammas), self.config.clip)


    def predict_prefixes(self, episode: iclbench.Episode) -> torch.Tensor | None:
        """(B, N, dy): one step's prediction from every context prefix in one pass (a step is a
        running mean; GD++'s correction acts only after it); None for more steps."""
        if self.config.steps != 1:
            return None
        pred = self.rates()[0][0] * running_means(episode)  # (B, N, dy)
        clip = self.config.clip
        return pred if clip is None else pred.clamp(-clip, clip)


class GDPlusPlus(GradientDescent):
    name = "gd++"

    class Config(GradientDescent.Config):
        gamma: Rate = Field(None, description="fixed curvature correction(s); None: tuned")

    curvature_correction = True


@iclbench.hookimpl
def register_learners(register) -> None:
    register(GradientDescent)
    register(GDPlusPlus)
