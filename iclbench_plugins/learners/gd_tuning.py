"""Tuning GD's and GD++'s rates on training tasks: in seconds, and the same every time.

Every loss is evaluated on the tasks' `Spectrum` (elementwise on (B, d), float64), so a
whole L-BFGS run costs less than one pass of the token view over the tuning tasks. The
procedure, chosen so the comparator can be trusted rather than merely tuned:

1. Shared rates (one eta, and for GD++ one gamma): the best point of a wide log grid in units
   of 1 / mean eigenvalue, refined by L-BFGS.
2. Per-step rates (`per_step`, K > 1): a search from several principled starts (the shared
   optimum spread over the steps; the greedy schedule, each step the best given those before
   it; the schedule grown a step at a time; for GD the Chebyshev schedule over the tuning
   eigenvalues) and fixed perturbations of them, on a subset of the tuning tasks; the best
   few are refined on all of them. Every refinement is under a stability constraint: at each
   eigenvalue up to `MARGIN` times the largest seen in tuning, the residual filter |r| stays
   within max(1, |r| of the shared rates), and a solution that breaks it is pulled back
   towards the shared rates until it holds. A polynomial fitted to the bulk of the spectrum
   can otherwise explode just past it, on tasks too rare to be among the tuning ones.
3. Validation on fresh training tasks with the learner's own prediction (the token view,
   clipping included): per-step rates are kept only if they beat the shared ones there.

The search's perturbations come from a fixed generator, and no reduction here is split by
thread count (tensors stay below torch's parallel grain): the same tasks give the same rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from iclbench.plugin_api import lbfgs
from iclbench_plugins.learners.gd_spectrum import Spectrum, filters

MARGIN = 1.5  # the stability constraint holds up to this multiple of the largest tuning eigenvalue
GRID_POINTS = 2001  # eigenvalues the constraint is checked at
PENALTY = 100.0  # weight of a violated constraint, in units of the zero predictor's loss
SLACK = 1e-3  # relative excess over the envelope still counted as stable
SEARCH_TASKS = 2048  # tuning tasks the per-step search runs on (all of them refine its best)
SEARCH_ITERATIONS = 40  # L-BFGS iterations of one search run
REFINE_ITERATIONS = 60  # L-BFGS iterations of a refinement on every tuning task
PERTURBATIONS = 0  # perturbed copies of each principled start
REFINED = 1  # search results refined on every tuning task
TOLERANCE = 1e-12  # L-BFGS stops once a step changes the loss by less than this fraction of its start
ETA_GRID = [2.0 ** (i / 2) for i in range(-8, 7)]  # shared eta, in units of 1 / mean eigenvalue
GAMMA_GRID = [0.0] + [2.0 ** i for i in range(-6, 3)]  # shared gamma, same unit


@dataclass
class Rates:
    """One rate per step (K,) each; gammas None for GD."""

    etas: torch.Tensor
    gammas: torch.Tensor | None

    def lists(self) -> tuple[list[float], list[float] | None]:
        return self.etas.tolist(), None if self.gammas is None else self.gammas.tolist()


@dataclass
class Tuning:
    """What was chosen and why: tuning and validation losses of the shared and per-step rates."""

    rates: Rates
    report: dict[str, float | str] = field(default_factory=dict)


def minimise(x0: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor], max_iter: int = 200) -> torch.Tensor:
    """L-BFGS from `x0`; the start is kept when the end is not finite or not lower."""
    start = float(loss_of(x0))
    x = x0.clone().requires_grad_(True)
    end = lbfgs([x], lambda: loss_of(x), max_iter=max_iter, tolerance_change=TOLERANCE * abs(start))
    if not (math.isfinite(end) and end < start) or not bool(torch.isfinite(x).all()):
        return x0
    return x.detach()


def finite(value: torch.Tensor) -> torch.Tensor:
    """`value`, or +inf where it is NaN (a rate past stability), so comparisons stay ordered."""
    return torch.where(torch.isnan(value), torch.full_like(value, math.inf), value)


def pull_back(safe: torch.Tensor, x: torch.Tensor, ok: Callable[[torch.Tensor], bool]) -> torch.Tensor:
    """The point nearest `x` on the segment from `safe` (where `ok` holds) where `ok` holds."""
    if ok(x):
        return x
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(safe + mid * (x - safe)) else (lo, mid)
    return safe + lo * (x - safe)


class RateTuner:
    """Free rates of a K-step GD / GD++ on one `Spectrum`, in units of 1 / mean eigenvalue;
    fixed ones (per-step lists or one shared value) stay as configured."""

    def __init__(self, spec: Spectrum, steps: int, curvature: bool, etas: list[float] | None,
                 gammas: list[float] | None, grid: torch.Tensor | None = None) -> None:
        self.spec, self.K, self.curvature = spec, steps, curvature
        self.f64 = dict(dtype=torch.float64, device=spec.lam.device)
        self.unit = 1.0 / float(spec.lam.mean().clamp_min(1e-12))  # rates times eigenvalues are O(1)
        self.fixed_eta = None if etas is None else torch.tensor(etas, **self.f64).expand(steps)
        self.fixed_gamma = None if gammas is None or not curvature else torch.tensor(gammas, **self.f64).expand(steps)
        self.grid = grid if grid is not None else torch.linspace(0, MARGIN * float(spec.lam.max()), GRID_POINTS,
                                                                 **self.f64)  # (G,)
        self.names = (["eta"] if etas is None else []) + (["gamma"] if curvature and gammas is None else [])

    def on(self, spec: Spectrum, steps: int | None = None) -> "RateTuner":
        """The same free and fixed rates on other tasks (the constraint's eigenvalues kept), or
        over the first `steps` steps."""
        k = steps or self.K
        tuner = RateTuner(spec, k, self.curvature, None if self.fixed_eta is None else self.fixed_eta[:k].tolist(),
                          None if self.fixed_gamma is None else self.fixed_gamma[:k].tolist(), self.grid)
        tuner.unit = self.unit
        return tuner

    def rates(self, x: torch.Tensor, per_step: bool) -> Rates:
        """Rates from the free parameters `x`: one value per free name, or K each."""
        n = self.K if per_step else 1
        parts = {name: x[i * n:(i + 1) * n] * self.unit for i, name in enumerate(self.names)}
        eta = parts["eta"].expand(self.K) if "eta" in parts else self.fixed_eta
        gamma = parts["gamma"].expand(self.K) if "gamma" in parts else self.fixed_gamma
        if self.curvature and gamma is None:
            gamma = torch.zeros(self.K, **self.f64)
        return Rates(eta, gamma)

    def loss(self, rates: Rates) -> torch.Tensor:
        return finite(self.spec.loss(rates.etas, rates.gammas))

    def residual(self, rates: Rates) -> torch.Tensor:
        """|r| at the constraint's eigenvalues (G,)."""
        return filters(self.grid, rates.etas, rates.gammas)[1].abs()

    def per_step_of(self, shared_x: torch.Tensor) -> torch.Tensor:
        """The shared parameters as per-step ones (the same value at every step)."""
        return torch.cat([v.expand(self.K) for v in shared_x])

    def shared(self, search: "RateTuner") -> torch.Tensor:
        """The shared optimum's free parameters: the grid's best point on `search`'s tasks,
        refined on these."""
        grids = {"eta": ETA_GRID, "gamma": GAMMA_GRID}
        cands = torch.cartesian_prod(*(torch.tensor(grids[n], **self.f64) for n in self.names))
        cands = cands.reshape(len(cands), -1)  # (C, free)
        losses = torch.stack([search.loss(search.rates(c, False)) for c in cands])
        best = cands[int(torch.argmin(losses))]  # the first of equal losses: the same every time
        best = minimise(best, lambda x: search.loss(search.rates(x, False)))
        return minimise(best, lambda x: self.loss(self.rates(x, False)), REFINE_ITERATIONS)

    def starts(self, shared_x: torch.Tensor) -> list[torch.Tensor]:
        """Principled per-step starts (module docstring) and fixed perturbations of them."""
        K = self.K
        spread = torch.logspace(0.1, -0.1, K, **self.f64)
        base = [torch.cat([v * spread for v in shared_x]), self.greedy(shared_x), self.growing(shared_x)]
        if self.names == ["eta"] and not self.curvature:
            lo, hi = (float(torch.quantile(self.spec.lam.flatten(), q)) for q in (0.05, 1.0))
            j = torch.arange(1, K + 1, **self.f64)
            nodes = (hi + lo) / 2 + (hi - lo) / 2 * torch.cos((2 * j - 1) * math.pi / (2 * K))  # (K,)
            base.append(1.0 / (nodes * self.unit))
        gen = torch.Generator(device="cpu").manual_seed(0)  # fixed: the same starts every time
        noise = [torch.exp(torch.randn(PERTURBATIONS, len(x), generator=gen, dtype=torch.float64) * 0.5) for x in base]
        return base + [x * n.to(x.device) for x, ns in zip(base, noise) for n in ns]

    def greedy(self, shared_x: torch.Tensor) -> torch.Tensor:
        """Step k's eta, and the gamma of the step before (the transform step k's update sees),
        each the best given the steps before, on the loss after k steps."""
        x = self.per_step_of(shared_x).clone()
        for k in range(self.K):
            sub = self.on(self.spec, k + 1)
            slots = [i * self.K + j for i, (name, j) in enumerate((n, k if n == "eta" else k - 1) for n in self.names)
                     if j >= 0]
            if not slots:  # step 1's rate is fixed and no transform comes before it
                continue

            def loss(z: torch.Tensor) -> torch.Tensor:
                full = x.clone()
                full[slots] = z
                parts = full.reshape(len(self.names), self.K)[:, :k + 1].flatten()
                return sub.loss(sub.rates(parts, True))

            x[slots] = minimise(x[slots], loss, SEARCH_ITERATIONS)
        return x

    def growing(self, shared_x: torch.Tensor) -> torch.Tensor:
        """The best per-step rates of k steps, one more step appended with the last values and
        all refined jointly, from k = 1 to K."""
        x = shared_x.reshape(len(self.names), 1)  # (free, k)
        for k in range(2, self.K + 1):
            sub = self.on(self.spec, k)
            z0 = torch.cat([x, x[:, -1:]], dim=1).flatten()
            x = minimise(z0, lambda z: sub.loss(sub.rates(z, True)), SEARCH_ITERATIONS).reshape(len(self.names), k)
        return x.flatten()

    def constrained(self, shared_x: torch.Tensor) -> tuple[Callable, Callable]:
        """The penalised objective (a weight -> loss function) and the stability test of
        per-step parameters, against the shared rates' envelope."""
        log_envelope = self.residual(self.rates(shared_x, False)).clamp_min(1.0).log()  # (G,)

        def excess(x: torch.Tensor) -> torch.Tensor:
            """log(|r| / envelope) where above 0 (G,): logarithmic, so a far-off start still has
            a usable gradient."""
            return finite(torch.relu(self.residual(self.rates(x, True)).clamp_min(1e-30).log() - log_envelope))

        def objective(weight: float) -> Callable[[torch.Tensor], torch.Tensor]:
            scale = weight * self.spec.zero_loss()
            return lambda x: self.loss(self.rates(x, True)) + scale * excess(x).pow(2).mean()

        def stable(x: torch.Tensor) -> bool:
            return float(excess(x).max()) <= math.log1p(SLACK)

        def restore(x: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
            """`x` made stable: the constraint's own minimum from `x`, else pulled back to `safe`."""
            if not stable(x):
                x = minimise(x, lambda z: excess(z).pow(2).mean())
            return pull_back(safe, x, stable)

        return objective, restore

    def per_step(self, shared_x: torch.Tensor, search: "RateTuner") -> tuple[torch.Tensor | None, float]:
        """The best stable per-step parameters (None if none beats the shared ones) and their loss."""
        objective, restore = self.constrained(shared_x)
        coarse, coarse_restore = search.constrained(shared_x)
        diagonal = self.per_step_of(shared_x)
        found = []
        for x in search.starts(shared_x):
            x = coarse_restore(x, diagonal)  # every search starts stable
            for weight in (PENALTY, 100 * PENALTY):  # first into the basin, then onto the constraint
                x = minimise(x, coarse(weight), SEARCH_ITERATIONS)
            found.append(x)
        found.sort(key=lambda x: float(coarse(100 * PENALTY)(x)))  # stable: ties keep the start order
        best, best_loss = None, float(self.loss(self.rates(diagonal, True)))
        for x in found[:REFINED]:
            x = restore(minimise(x, objective(100 * PENALTY), REFINE_ITERATIONS), diagonal)
            loss = float(self.loss(self.rates(x, True)))
            if loss < best_loss:
                best, best_loss = x, loss
        return best, best_loss


def head(spec: Spectrum, n: int) -> Spectrum:
    """The first `n` tasks of `spec`."""
    return Spectrum(spec.lam[:n], spec.b[:n], spec.y[:n])


def tune_rates(spec: Spectrum, steps: int, curvature: bool, per_step: bool, etas: list[float] | None,
               gammas: list[float] | None, validate: Callable[[Rates], float]) -> Tuning:
    """The rates the module docstring describes; `validate` gives a candidate's loss on fresh
    training tasks with the learner's own prediction."""
    tuner = RateTuner(spec, steps, curvature, etas, gammas)
    search = tuner.on(head(spec, SEARCH_TASKS))
    if not tuner.names:
        return Tuning(tuner.rates(torch.zeros(0, **tuner.f64), False))
    shared_x = tuner.shared(search)
    shared = tuner.rates(shared_x, False)
    report: dict[str, float | str] = {"zero_loss": spec.zero_loss(), "shared_loss": float(tuner.loss(shared))}
    if not (per_step and steps > 1):
        return Tuning(shared, report)
    x, loss = tuner.per_step(shared_x, search)
    if x is None:
        return Tuning(shared, report | {"chosen": "shared", "why": "no stable per-step rates beat the shared ones"})
    candidate = tuner.rates(x, True)
    report |= {"per_step_loss": loss, "shared_validation": validate(shared),
               "per_step_validation": validate(candidate)}
    if report["per_step_validation"] < report["shared_validation"]:
        return Tuning(candidate, report | {"chosen": "per-step"})
    return Tuning(shared, report | {"chosen": "shared", "why": "per-step rates lost on fresh training tasks"})
