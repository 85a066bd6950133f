"""GD++ as preconditioning (von Oswald et al. 2023, App. A.10): the condition number of the
context covariance S = X^T X / N before and after each learned curvature-correction step
x <- (I - gamma S) x. A step that lowers it makes the following GD step better conditioned.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import Analysis, AnalysisConfig, AnalysisContext, save, subplots


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
        path = ctx.figure_path("gdpp-conditioning")
        fig, ax = subplots(figsize=(5, 3.5))
        ax.boxplot([c.log10().tolist() for c in cond], showfliers=False)
        ax.set_xticks(range(1, len(median) + 1), ["before"] + [f"after step {k + 1}" for k in range(len(gammas))])
        ax.set_ylabel("log10 condition number of X^T X / N")
        ax.set_title(f"{learner.label}: N = {self.config.N}", fontsize=9)
        save(fig, path, dpi=120)
        return {"learner": learner.label, "gamma": gammas, "N": self.config.N, "median_condition": median,
                "mean_condition": cond.mean(dim=1).tolist(), "figure": str(path)}


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(Conditioning)
