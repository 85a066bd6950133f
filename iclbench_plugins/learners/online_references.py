"""Closed-form per-position references for sequence tasks (von Oswald et al. 2023b): at position
t, fit the transitions seen so far, (s_{t'-1}, s_t') for t' <= t, and apply the fit to s_t.
With C_t = sum_{t'<=t} s_{t'-1} s_{t'-1}^T and M_t = sum_{t'<=t} s_t' s_{t'-1}^T (s_0 = 0):

- `online-ridge`: Phi_t = M_t (C_t + lambda I)^{-1}, the mesa-layer's solution with keys s_{t-1},
  values s_t, queries s_t; lambda tuned on training sequences for the loss averaged over
  positions (lambda -> 0: online least squares).
- `online-gd`: K gradient steps (`steps`, default 1) from Phi^(0) = 0 on the summed loss
  1/2 sum_{t'<=t} ||Phi s_{t'-1} - s_t'||^2, Phi^(k+1) = Phi^(k) - eta (Phi^(k) C_t - M_t), prediction
  Phi^(K) s_t. K = 1 is eta M_t s_t = eta sum_t' s_t' (s_{t'-1} . s_t), linear attention with the
  same keys and values, eta in closed form (the training loss is quadratic in it); K > 1: eta
  tuned on training sequences (a grid, then L-BFGS).
- `online-gdpp`: GD++ (von Oswald et al. 2023a) on the same loss: each of K steps first
  transforms inputs and query alike, x <- A x with A = I - gamma C (C of the current inputs), then
  takes a GD step on the transformed data, the targets being the residuals of the steps so far
  (as in the tokens of a deep linear self-attention; `gdpp_filter`); gamma and eta tuned on
  training sequences.

Every Phi^(k) here is M_t f(C_t) for a scalar function f built by the steps (all the matrices
involved are functions of C_t), so K > 1 is evaluated in C_t's eigenbasis (`Spectrum`): one
batched eigendecomposition per episode, then each step is elementwise on (B, T, D), which makes
tuning cheap. All references give every position in one pass (`predict_positions`), batched
over tasks.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import grid_search, is_sequence, lbfgs, states_of, task_losses, TunedLearner
from iclbench_plugins.learners.least_squares import Ridge
from iclbench_plugins.transformers.nn.attention import linear_attention
from iclbench_plugins.transformers.nn.mesa_layer import mesa_attention


def transition_qkv(episode: iclbench.Episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries s_t, keys s_{t-1} (s_0 = 0), values s_t, each (B, 1, T, D) for t = 1..T, and the
    targets s_{t+1} (B, T, D)."""
    if not is_sequence(episode):
        raise ValueError(f"online references need a sequence episode, got token_format {episode.token_format!r}")
    s = states_of(episode).double()  # (B, T+1, D)
    q = s[:, :-1]  # (B, T, D) s_t
    k = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-2]], dim=1)  # (B, T, D) s_{t-1}
    return q[:, None], k[:, None], q[:, None], s[:, 1:]


def transition_moments(episode: iclbench.Episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """C_t and M_t (B, T, D, D) at every position (module docstring), the queries s_t and the
    targets s_{t+1} (B, T, D), in float64."""
    q, k, _, target = transition_qkv(episode)
    q, k = q[:, 0], k[:, 0]  # (B, T, D)
    C = torch.cumsum(k[..., :, None] * k[..., None, :], dim=1)  # (B, T, D, D) sum_{t'<=t} s_{t'-1} s_{t'-1}^T
    M = torch.cumsum(q[..., :, None] * k[..., None, :], dim=1)  # (B, T, D, D) sum_{t'<=t} s_t' s_{t'-1}^T
    return C, M, q, target


class Spectrum(NamedTuple):
    """C_t = V diag(lam) V^T at every position: lam (B, T, D), the query in the eigenbasis
    u = V^T s_t (B, T, D), w = M_t V (B, T, D, D), and the targets s_{t+1} (B, T, D)."""

    lam: torch.Tensor
    u: torch.Tensor
    w: torch.Tensor
    target: torch.Tensor

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """(B, T, D): M_t f(C_t) s_t for f given at the eigenvalues, (B, T, D)."""
        return (self.w @ (f * self.u)[..., None])[..., 0]

    def loss(self, f: torch.Tensor) -> torch.Tensor:
        """The loss of M_t f(C_t) s_t averaged over tasks and positions (a 0-dim tensor)."""
        return task_losses(self.apply(f), self.target).mean()


def spectrum(episode: iclbench.Episode) -> Spectrum:
    """The `Spectrum` of C_t at every position of `episode`: one batched eigh, float64."""
    C, M, q, target = transition_moments(episode)
    lam, V = torch.linalg.eigh(C)  # (B, T, D), (B, T, D, D)
    u = (V.transpose(-1, -2) @ q[..., None])[..., 0]  # (B, T, D)
    return Spectrum(lam, u, M @ V, target)


def gd_filter(lam: torch.Tensor, eta: float | torch.Tensor, steps: int) -> torch.Tensor:
    """f with Phi^(K) = M f(C) after K GD steps from 0: f <- f (1 - eta lam) + eta, elementwise
    on the eigenvalues lam, as Phi <- Phi (I - eta C) + eta M."""
    f = torch.zeros_like(lam)
    for _ in range(steps):
        f = f * (1 - eta * lam) + eta
    return f


def gdpp_filter(lam: torch.Tensor, eta: float | torch.Tensor, gamma: float | torch.Tensor, steps: int) -> torch.Tensor:
    """f with prediction M f(C) s after K GD++ steps, in the token picture a deep linear
    self-attention computes: inputs x_i = s_{i-1}, targets y_i = s_i turned into residuals, query
    x_q = s_t. Per step, with C and R = sum_i y_i x_i^T of the current tokens:
    A = I - gamma C; x <- A x (C <- A C A^T, R <- R A^T, x_q <- A x_q); the prediction gains
    eta R x_q; y_i <- y_i - eta R x_i (R <- R (I - eta C)). Every factor is a function of the
    original C, tracked here by its value at each eigenvalue; gamma = 0 is GD."""
    c, r, a, f = lam, torch.ones_like(lam), torch.ones_like(lam), torch.zeros_like(lam)
    for _ in range(steps):
        A = 1 - gamma * c
        c, r, a = A * c * A, r * A, a * A
        f = f + eta * r * a
        r = r * (1 - eta * c)
    return f


def tune(loss_of: Callable[[torch.Tensor], torch.Tensor], grid: Iterable[list[float]],
         max_iter: int = 50, search_loss_of: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[float]:
    """The point of `grid` with the lowest finite loss (`search_loss_of`'s, on fewer tasks, if
    given), refined by L-BFGS on `loss_of`; the refinement is kept only when it lowers the loss
    (a rate past stability can send it to inf or NaN)."""
    def at(x: list[float], of=loss_of) -> float:
        return float(of(torch.tensor(x, dtype=torch.float64)))

    start = grid_search(({"x": x} for x in grid), lambda c: at(c["x"], search_loss_of or loss_of))["x"]
    start_loss = at(start)
    x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    end_loss = lbfgs([x], lambda: loss_of(x), max_iter=max_iter)
    return x.detach().tolist() if math.isfinite(end_loss) and end_loss < start_loss else list(start)


class OnlineRidge(Ridge):
    """`ridge` at every position, lambda unscaled by the number of transitions (as the mesa-layer's)."""

    name = "online-ridge"

    class Config(iclbench.LearnerConfig):
        lam: float | None = Field(None, gt=0, description="fixed lambda; None: tuned on training sequences")
        grid: list[float] = Field(default_factory=lambda: [10.0**e for e in range(-6, 3)])
        tune_tasks: int = Field(2048, ge=1)

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        target = transition_qkv(episode)[3]  # (B, T, D)
        return grid_search(({"lam": lam} for lam in self.config.grid),
                           lambda c: float(task_losses(self.positions(episode, c["lam"]), target).mean()))

    @staticmethod
    def positions(episode: iclbench.Episode, lam: float) -> torch.Tensor:
        q, k, v, _ = transition_qkv(episode)
        lam_h = torch.tensor([lam], dtype=q.dtype, device=q.device)  # (H=1,)
        return mesa_attention(q, k, v, lam_h, method="solve")[:, 0]  # (B, T, D)

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, T, D): the prediction of s_{t+1} at every position t."""
        self.require_tuned()
        return self.positions(episode, self.lam).to(episode.query_x.dtype)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self.predict_positions(episode)[:, -1]


SEARCH_SEQUENCES = 256  # training sequences a grid is searched on (the refinement uses all)
RATE_GRID = [2.0 ** (i / 4) for i in range(-16, 17)]  # multiples of the one-step rate
GAMMA_GRID = [0.0] + [2.0 ** i for i in range(-6, 2)]  # GD++'s transform rate, same unit
PP_RATE_GRID = [2.0 ** (i / 2) for i in range(-4, 7)]  # GD++ takes larger steps: the transform shrinks C


class OnlineGD(TunedLearner):
    """K steps of GD from Phi = 0 on the transitions seen so far (module docstring)."""

    name = "online-gd"
    tuned = ("eta",)

    class Config(iclbench.LearnerConfig):
        eta: float | None = Field(None, description="fixed learning rate; None: the training-loss minimiser")
        steps: int = Field(1, ge=1, description="gradient steps K per position; K > 1 tunes eta by grid and L-BFGS")
        tune_tasks: int = Field(2048, ge=1)

    @staticmethod
    def step(episode: iclbench.Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) the unit-rate step at every position, and the targets."""
        q, k, v, target = transition_qkv(episode)
        return linear_attention(q, k, v)[:, 0], target

    @staticmethod
    def one_step_rate(episode: iclbench.Episode) -> float:
        """argmin_eta sum ||eta a - target||^2 for the unit-rate step a: the best one-step rate."""
        a, target = OnlineGD.step(episode)
        return float((a * target).sum() / a.pow(2).sum())

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        eta1 = self.one_step_rate(episode)
        if self.config.steps == 1:
            return {"eta": eta1}
        spec, K = spectrum(episode), self.config.steps
        few = Spectrum(*(t[:SEARCH_SEQUENCES] for t in spec))  # the grid's search runs on these
        return {"eta": eta1 * tune(lambda x: spec.loss(gd_filter(spec.lam, x[0] * eta1, K)), ([e] for e in RATE_GRID),
                                   search_loss_of=lambda x: few.loss(gd_filter(few.lam, x[0] * eta1, K)))[0]}

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        self.require_tuned()
        if self.config.steps == 1:
            return (self.eta * self.step(episode)[0]).to(episode.query_x.dtype)
        spec = spectrum(episode)
        return spec.apply(gd_filter(spec.lam, self.eta, self.config.steps)).to(episode.query_x.dtype)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self.predict_positions(episode)[:, -1]


class OnlineGDPP(TunedLearner):
    """K steps of GD++ from Phi = 0 on the transitions seen so far (module docstring, `gdpp_filter`)."""

    name = "online-gdpp"
    tuned = ("eta", "gamma")

    class Config(iclbench.LearnerConfig):
        eta: float | None = Field(None, description="fixed learning rate; None: tuned on training sequences")
        gamma: float | None = Field(None, description="fixed input-transform rate; None: tuned on training sequences")
        steps: int = Field(2, ge=1, description="GD++ steps K per position")
        tune_tasks: int = Field(2048, ge=1)

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        """What is not fixed, in units of the one-step rate: first eta at gamma = 0 (GD-K), then
        a (gamma, eta) grid around it (gamma = 0 included, so the tuned training loss is never
        above GD-K's), then L-BFGS on both."""
        spec, K, unit = spectrum(episode), self.config.steps, OnlineGD.one_step_rate(episode)
        few = Spectrum(*(t[:SEARCH_SEQUENCES] for t in spec))  # the grids' search runs on these

        def loss(gamma, eta, on=spec):
            return on.loss(gdpp_filter(on.lam, eta * unit, gamma * unit, K))

        def fit(of, grid):  # of(x, on): the loss at parameters x on a spectrum
            return tune(lambda x: of(x, spec), grid, search_loss_of=lambda x: of(x, few))

        if free == ["eta"]:
            return {"eta": unit * fit(lambda x, on: loss(self.gamma / unit, x[0], on), ([e] for e in RATE_GRID))[0]}
        if free == ["gamma"]:
            return {"gamma": unit * fit(lambda x, on: loss(x[0], self.eta / unit, on), ([g] for g in GAMMA_GRID))[0]}
        e0 = fit(lambda x, on: loss(0.0, x[0], on), ([e] for e in RATE_GRID))[0]  # GD-K
        grid = [[0.0, e0]] + [[g, e] for g in GAMMA_GRID[1:] for e in PP_RATE_GRID]
        gamma, eta = (unit * v for v in fit(lambda x, on: loss(x[0], x[1], on), grid))
        return {"eta": eta, "gamma": gamma}

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        self.require_tuned()
        spec = spectrum(episode)
        return spec.apply(gdpp_filter(spec.lam, self.eta, self.gamma, self.config.steps)).to(episode.query_x.dtype)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self.predict_positions(episode)[:, -1]


@iclbench.hookimpl
def register_learners(register) -> None:
    register(OnlineRidge)
    register(OnlineGD)
    register(OnlineGDPP)
