"""Linear probes of a sequence Transformer's residual stream (von Oswald et al. 2023b, Sec. 4):
what does each layer hold about the sequence?

For every layer l (0 = the tokens) a linear map without bias is fitted by least squares from
the stream e_t^(l) to a target, over all positions of `fit_tasks` training sequences, and
scored on the suite's evaluation sequences by R^2 (1 - residual / total sum of squares,
averaged over target dimensions). Targets at position t:

- `next`: s_{t+1}, what the model must output;
- `previous`: s_{t-1}, a copy of the preceding state (s_0 = 0);
- `preconditioned`: (sum_{j<t} s_j s_j^T + lam I)^{-1} s_t, the mesa-layer's preconditioned
  query, which the paper finds emerging with depth.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import (
    Analysis, AnalysisConfig, AnalysisContext, decorate, generator, save, states_of, subplots)
from iclbench_plugins.transformers.sequence import trained_seq_tf

TARGETS = ("next", "previous", "preconditioned")


def probe_targets(s: torch.Tensor, lam: float) -> dict[str, torch.Tensor]:
    """Each target (B, T, D) at positions t = 1..T of states s (B, T+1, D)."""
    x = s[:, :-1].double()  # (B, T, D) s_t
    prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # (B, T, D) s_{t-1}
    gram = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # (B, T, D, D) sum_{j<t} s_j s_j^T
    eye = lam * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    pre = torch.linalg.solve(gram + eye, x[..., None])[..., 0]  # (B, T, D)
    return {"next": s[:, 1:].double(), "previous": prev, "preconditioned": pre}


def fit_probe(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(W, D) least-squares map from features (B, T, W) to target (B, T, D), all positions pooled.
    The SVD driver: streams have exactly constant channels (the constructed tokens' zero block),
    on which LAPACK's default pivoted-QR driver returns wrong solutions."""
    X, Y = features.reshape(-1, features.shape[-1]).double(), target.reshape(-1, target.shape[-1]).double()
    return torch.linalg.lstsq(X, Y, driver="gelsd").solution


def r_squared(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 - SS_res / SS_tot per target dimension (pooled over tasks and positions), averaged."""
    P, Y = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    res = (Y - P).pow(2).sum(0)  # (D,)
    tot = (Y - Y.mean(0)).pow(2).sum(0)  # (D,)
    return float((1 - res / tot).mean())


class Probes(Analysis):
    """R^2 of linear probes per layer for the next, the previous and the preconditioned state."""

    name = "probes"

    class Config(AnalysisConfig):
        learner: str = Field("seq-tf[layers=2]", description="a trained seq-tf")
        lam: float = Field(0.001, gt=0, description="lambda of the preconditioned target (the reference: 0.001)")
        fit_tasks: int = Field(1024, ge=1, description="training sequences the probes are fitted on")

    def run(self, ctx: AnalysisContext) -> dict:
        trained = trained_seq_tf(ctx, self.config.learner, self.name)
        fit = ctx.suite.train.sample(self.config.fit_tasks, generator=generator(ctx.device, ctx.seed, "probe-fit"),
                                     device=ctx.device).to(dtype=ctx.dtype)
        model = trained.model.to(device=ctx.device, dtype=ctx.dtype)
        r2: dict[str, list[float]] = {name: [] for name in TARGETS}
        with torch.no_grad():
            s_fit, s_eval = states_of(fit), states_of(ctx.episode())  # (B, T+1, D)
            streams_fit, streams_eval = model.streams(s_fit[:, :-1]), model.streams(s_eval[:, :-1])
            t_fit, t_eval = probe_targets(s_fit, self.config.lam), probe_targets(s_eval, self.config.lam)
            for e_fit, e_eval in zip(streams_fit, streams_eval):  # layer by layer, (B, T, W) each
                for name in TARGETS:
                    A = fit_probe(e_fit, t_fit[name])  # (W, D)
                    r2[name].append(r_squared(e_eval.double() @ A, t_eval[name]))
        path = ctx.figure_path(f"{self.name}-{trained.label}")
        fig, ax = subplots(figsize=(5.6, 3.8))
        for name, marker in zip(TARGETS, "os^"):
            ax.plot(range(len(r2[name])), r2[name], marker=marker, mfc="none", label=name)
        ax.set_xticks(range(len(r2["next"])), ["tokens"] + [f"layer {i}" for i in range(1, len(r2["next"]))])
        decorate(ax, "residual stream after", "probe R² on evaluation sequences", f"{trained.label}, seed {ctx.seed}")
        save(fig, path)
        return {"learner": trained.label, "lam": self.config.lam, "r2": r2, "figure": str(path)}


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(Probes)
