"""Gradient descent and GD++ as in-context learners (von Oswald et al. 2023, Sec. 2-3).

`gd`: K steps on L(W) = 1/(2N) sum_i ||W x_i - y_i||^2 from W0 = 0, applied to the query.
`gd++`: before each step's inputs move on, they are transformed x <- (I - gamma X^T X / N) x
(context and query alike), a curvature correction that trained recurrent LSA layers learn.
Learning rates (and gammas) are tuned on training tasks, shared or one per step (`gd_tuning`).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import (
    compute_seconds, episode_bytes, running_means, TAPE_FACTOR, task_losses, TaskShape, training_sample, Workload)
from iclbench_plugins.learners.gd_spectrum import spectrum
from iclbench_plugins.learners.gd_tuning import Rates, finite, tune_rates

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
    """K steps of gradient descent on the context's least-squares loss from W0 = 0, the rate(s) tuned on training tasks: what Proposition 1's LSA weights compute."""

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
        """Tune the rates the config leaves free on `tune_tasks` training tasks (`gd_tuning`:
        exact losses in the covariance's eigenbasis, per-step rates kept only when stable and
        better on fresh training tasks); the same seed gives the same rates."""
        self.etas = _per_step(self.config.eta)  # refitting starts from the config again
        self.gammas = _per_step(getattr(self.config, "gamma", None))
        self.tuning = {}
        if self.tuned:
            return
        c = self.config
        ep = training_sample(task, c.tune_tasks, generator, device)
        spec = spectrum(ep.context_x, ep.context_y, ep.query_x, ep.query_y)
        fresh: list[iclbench.Episode] = []  # drawn once, when a per-step candidate is validated

        def validate(rates: Rates) -> float:
            if not fresh:
                fresh.append(training_sample(task, c.tune_tasks, generator, device))
            pred = gd_predict(fresh[0], rates.etas, rates.gammas, c.clip)
            return float(finite(task_losses(pred, fresh[0].query_y).mean()))

        result = tune_rates(spec, c.steps, self.curvature_correction, c.per_step, self.etas, self.gammas, validate)
        self.etas, gammas = result.rates.lists()
        self.gammas = gammas if self.curvature_correction else None
        self.tuning = result.report

    def fit_info(self) -> dict:
        """How the tuned rates were chosen: tuning and validation losses (`gd_tuning.tune_rates`)."""
        return {"tuning": self.tuning} if getattr(self, "tuning", None) else {}

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload:
        """Predictions keep an autograd tape over all K steps, `batch_size` tasks at a time, when
        sensitivities are taken; tuning holds two sets of `tune_tasks` float64 tasks and their
        spectra, and evaluates losses elementwise on them."""
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
        d, dy = shape.dx, shape.dy
        spec_elems = tune * (d * d + d * dy + d + dy)
        evals = LBFGS_EVALUATIONS * (3 if self.config.per_step and K > 1 else 1)
        tuning = Workload(episode_bytes(shape, 2 * tune, 8) + 8 * (2 * spec_elems + TAPE_FACTOR * K * tune * d * 3),
                          compute_seconds(tune * (10 * d**3 + 4 * shape.n_context * d * (d + dy)) + 3 * tune * K * flops
                                          + evals * 12 * K * tune * d * (dy + 2), evals * 10 * K,
                                          evals * 6 * K * tune * d),
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
    """GD whose inputs are also transformed x <- (I - gamma X X^T) x each step: the curvature correction trained deep LSAs find."""

    name = "gd++"

    class Config(GradientDescent.Config):
        gamma: Rate = Field(None, description="fixed curvature correction(s); None: tuned")

    curvature_correction = True


@iclbench.hookimpl
def register_learners(register) -> None:
    register(GradientDescent)
    register(GDPlusPlus)
