"""GD++ as preconditioning (von Oswald et al. 2023, App. A.10, Fig 13): the condition number of
the context covariance S = X^T X / N before and after each learned curvature-correction step
x <- (I - gamma S) x. A step that lowers it makes the following GD step better conditioned.

The step maps each eigenvalue lambda of S to f(lambda, gamma) = lambda (1 - gamma lambda)^2
(Fig 13 left). Over the task distribution's eigenvalue range [lambda_min, lambda_max] (the
smallest and largest eigenvalue over all sampled tasks) the transformed range's condition
number is kappa++(gamma) = max f / min f on that range (Fig 13 centre; gamma = 0 gives
lambda_max / lambda_min); the per-task condition numbers before and after are Fig 13 right.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import Analysis, AnalysisConfig, AnalysisContext, decorate, save, subplots


def eigenvalue_map(lam: torch.Tensor, gamma: float) -> torch.Tensor:
    """f(lambda, gamma) = lambda (1 - gamma lambda)^2: an eigenvalue of S after x <- (I - gamma S) x."""
    return lam * (1 - gamma * lam) ** 2


def range_condition(lam_min: float, lam_max: float, gamma: float, points: int = 4001) -> float:
    """kappa++(gamma): max f / min f over [lam_min, lam_max] (log-spaced points and both ends)."""
    lam = torch.logspace(torch.log10(torch.tensor(lam_min, dtype=torch.float64)),
                         torch.log10(torch.tensor(lam_max, dtype=torch.float64)), points, dtype=torch.float64)
    f = eigenvalue_map(lam, gamma)  # (points,)
    low = float(f.min())
    return float(f.max()) / low if low > 0 else float("inf")


def condition_numbers(x: torch.Tensor, gammas: list[float]) -> torch.Tensor:
    """(K+1, B) condition number of each task's S = X^T X / N before and after each of the K
    transforms X <- X (I - gamma_k S_k), for contexts x (B, N, d)."""
    x = x.double()
    out = []
    for k in range(len(gammas) + 1):
        S = x.transpose(1, 2) @ x / x.shape[1]  # (B, d, d)
        eig = torch.linalg.eigvalsh(S)  # (B, d) ascending
        out.append(eig[:, -1] / eig[:, 0])
        if k < len(gammas):
            x = x - gammas[k] * (x @ S)
    return torch.stack(out)  # (K+1, B)


class Conditioning(Analysis):
    """Condition number of the context covariance through a GD++ learner's tuned steps."""

    name = "gd++-conditioning"

    class Config(AnalysisConfig):
        learner: str = Field("gd++[steps=2]", description="a gd++ learner, tuned on the suite's training tasks")
        N: int = Field(25, ge=2, description="context size of the tasks measured (the paper uses 25)")

    def run(self, ctx: AnalysisContext) -> dict:
        learner = ctx.learner(self.config.learner)
        _, gammas = learner.rates()
        if gammas is None:
            raise ValueError(f"{self.config.learner!r} has no curvature correction (gamma): use a gd++ learner")
        task = type(ctx.suite.train)(ctx.suite.train.config.model_copy(update={"N": self.config.N}))
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        ep = task.sample(ctx.n_tasks, generator=gen, device=ctx.device)
        cond = condition_numbers(ep.context_x, gammas)  # (K+1, B)
        median = cond.median(dim=1).values.tolist()
        x = ep.context_x.double()
        eig = torch.linalg.eigvalsh(x.transpose(1, 2) @ x / x.shape[1])  # (B, d) ascending
        lam_min, lam_max = float(eig[:, 0].min()), float(eig[:, -1].max())
        top = 4.0 * max(abs(gammas[0]), 1e-3)
        grid = torch.linspace(0.0, top, 81, dtype=torch.float64).tolist()  # gamma values of Fig 13 centre
        kappa = [range_condition(lam_min, lam_max, g) for g in grid]
        path = ctx.figure_path("gdpp-conditioning")
        plot_conditioning(path, learner.label, self.config.N, gammas, cond, lam_min, lam_max, grid, kappa)
        return {"learner": learner.label, "gamma": gammas, "N": self.config.N, "median_condition": median,
                "mean_condition": cond.mean(dim=1).tolist(), "lambda_min": lam_min, "lambda_max": lam_max,
                "range_condition_before": lam_max / lam_min,
                "range_condition_tuned": range_condition(lam_min, lam_max, gammas[0]),
                "gamma_grid": grid, "range_condition": kappa, "figure": str(path)}


def plot_conditioning(path, label: str, N: int, gammas: list[float], cond: torch.Tensor, lam_min: float,
                      lam_max: float, grid: list[float], kappa: list[float]) -> None:
    """Fig 13's three panels: the eigenvalue map for a few gammas, kappa++ against gamma with the
    tuned first-step gamma marked, and the per-task condition numbers through the steps."""
    fig, (left, centre, right) = subplots(1, 3, figsize=(14, 3.8))
    lam = torch.logspace(torch.log10(torch.tensor(lam_min)), torch.log10(torch.tensor(lam_max)), 400,
                         dtype=torch.float64)
    for g in sorted({0.0, gammas[0], gammas[0] / 2, 2 * gammas[0]}):
        left.plot(lam, eigenvalue_map(lam, g), label=f"γ = {g:.3g}" + (" (tuned, step 1)" if g == gammas[0] else ""))
    decorate(left, "eigenvalue λ of X^T X / N (the tasks' range)", "f(λ, γ) = λ (1 − γλ)²", "eigenvalue map",
             log=True)
    left.set_xscale("log")
    centre.plot(grid, kappa, color="black")
    centre.axvline(gammas[0], color="tab:red", ls="--", label=f"tuned γ = {gammas[0]:.3g}")
    decorate(centre, "γ", "κ++ = max f / min f over the range", "condition number of the range", log=True)
    right.boxplot([c.log10().tolist() for c in cond], showfliers=False)
    right.set_xticks(range(1, cond.shape[0] + 1), ["before"] + [f"after step {k + 1}" for k in range(len(gammas))])
    right.set_ylabel("log10 condition number of X^T X / N")
    right.set_title("per task", fontsize=9)
    fig.suptitle(f"{label}: N = {N} (App A.10, Fig 13)", fontsize=9)
    save(fig, path, dpi=120)


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(Conditioning)
