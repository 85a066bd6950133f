"""Analyses of trained LSA models against the GD construction (von Oswald et al. 2023, Sec. 4).

- `interpolation`: rescale the trained products (W_KQ / s, W_PV * s with s the mean of W_KQ's
  first d diagonal entries), average them with the construction, report the losses.
- `repeated`: apply a trained one-layer model T times with dampening lambda, beside GD.
- `weights`: W_KQ and W_PV of the trained model beside the construction, as a PNG.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.analysis import Analysis, AnalysisConfig, AnalysisContext
from iclbench.metrics import task_losses
from iclbench_plugins.transformer.constructions import gd_products
from iclbench_plugins.transformer.learners import LSAGD, TransformerLearner, predict_with
from iclbench_plugins.transformer.model import InContextTransformer, tokens
from iclbench.plotting import save, subplots


def products(model: InContextTransformer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W_KQ, W_PV) = (W_K^T W_Q, P W_V) of each applied layer of a one-head linear model."""
    return [tuple(w[0].detach().double().cpu() for w in model.block(k).attn.products()) for k in range(model.layers)]


def from_products(dx: int, dy: int, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> InContextTransformer:
    """An untied one-head LSA whose layers have the given (W_KQ, W_PV): W_Q = W_KQ, W_K = I, W_V = W_PV, P = I."""
    model = InContextTransformer(dx, dy, len(layers), 1, "linear", False, False, False, None, 1.0).double()
    eye = torch.eye(dx + dy, dtype=torch.float64)
    with torch.no_grad():
        for block, (kq, pv) in zip(model.blocks, layers):
            block.attn.W_Q.copy_(kq[None])
            block.attn.W_K.copy_(eye[None])
            block.attn.W_V.copy_(pv[None])
            block.attn.P.copy_(eye[None])
    return model


def plain_lsa(learner: iclbench.Learner, analysis: str) -> TransformerLearner:
    c = learner.config
    if not isinstance(learner, TransformerLearner) or c.attention != "linear" or c.heads != 1 or c.mlp or c.layernorm:
        raise ValueError(f"analysis {analysis!r} needs a one-head linear LSA without MLP or LayerNorm, got {learner.label!r}")
    return learner


def loss_of(model: InContextTransformer, episode: iclbench.Episode, steps: int | None = None) -> float:
    with torch.no_grad():
        return float(task_losses(predict_with(model, episode, steps), episode.query_y).mean())


class Interpolation(Analysis):
    name = "interpolation"

    class Config(AnalysisConfig):
        learner: str = Field("lsa", description="the trained learner, e.g. lsa[layers=2]")
        alpha: float = Field(0.5, ge=0, le=1, description="weight of the construction in the average")

    def run(self, ctx: AnalysisContext) -> dict:
        trained = plain_lsa(ctx.learner(self.config.learner), self.name)
        gd = ctx.learner(f"lsa-gd[steps={trained.config.layers}]")
        ep = ctx.episode().to(dtype=torch.float64)
        etas, _ = gd.gd.rates()
        a = self.config.alpha
        mixed, scales = [], []
        for (kq, pv), eta in zip(products(trained.model), etas):
            s = float(kq.diagonal()[: ep.dx].mean())
            ckq, cpv = gd_products(ep.dx, ep.dy, eta)
            mixed.append(((1 - a) * kq / s + a * ckq, (1 - a) * pv * s + a * cpv))
            scales.append(s)
        return {
            "learner": trained.label, "alpha": a, "scales": scales, "gd_eta": etas,
            "loss_trained": loss_of(trained.model, ep),
            "loss_construction": loss_of(gd.constructed(ep.dx, ep.dy), ep),
            "loss_interpolated": loss_of(from_products(ep.dx, ep.dy, mixed), ep),
        }


class RepeatedApplication(Analysis):
    name = "repeated"

    class Config(AnalysisConfig):
        learner: str = Field("lsa", description="a trained one-layer learner")
        steps: int = Field(50, ge=1, description="T, how often the layer is applied")
        damping: float = Field(0.75, gt=0, description="lambda: each application adds lambda times the update")

    def run(self, ctx: AnalysisContext) -> dict:
        trained = ctx.learner(self.config.learner)
        if trained.config.layers != 1 or trained.config.recurrent:
            raise ValueError(f"analysis 'repeated' needs a one-layer learner, got {trained.label!r}")
        gd = ctx.learner("lsa-gd")
        ep = ctx.episode()
        losses = {label: dampened_losses(model, ep, self.config.steps, self.config.damping)  # (T, B) each
                  for label, model in (("trained", trained.model), ("gd", gd.constructed(ep.dx, ep.dy)))}
        curves = {label: l.mean(1).tolist() for label, l in losses.items()}
        medians = {label: l.median(1).values.tolist() for label, l in losses.items()}
        path = ctx.figure_path(f"repeated-{trained.label}")
        plot_curves(curves, path, f"{trained.label} applied repeatedly (lambda = {self.config.damping})", medians)
        # a task diverges where the damped step exceeds 2 / (largest curvature): mean curves then blow up late
        diverged = {label: int((l[-1] > l[0]).sum()) for label, l in losses.items()}
        return {"learner": trained.label, "damping": self.config.damping, "loss": curves, "median_loss": medians,
                "diverged_tasks": diverged, "tasks": ep.batch_size, "figure": str(path)}


def dampened_losses(model: InContextTransformer, ep: iclbench.Episode, T: int, lam: float) -> torch.Tensor:
    """(T, B) query loss of every task after each of T applications of the first layer, damped:
    y <- y + lam * (update of y).

    Only the label channel moves, as in the reference code: the inputs stay the data, so a
    trained layer's small input updates cannot compound over T applications.
    """
    model.to(device=ep.device, dtype=ep.context_x.dtype)
    z = tokens(ep.context_x, ep.context_y, ep.query_x)  # (B, N+1, D)
    block, out = model.block(0), []
    with torch.no_grad():
        for _ in range(T):
            dy = block(z, ep.n_context, query_only=False)[..., model.dx:] - z[..., model.dx:]  # (B, N+1, dy)
            z = torch.cat([z[..., : model.dx], z[..., model.dx:] + lam * dy], dim=-1)
            out.append(task_losses(-z[:, -1, model.dx:], ep.query_y))
    return torch.stack(out)


def plot_curves(curves: dict[str, list[float]], path, title: str, medians: dict[str, list[float]]) -> None:
    fig, ax = subplots(figsize=(5, 3.5))
    for label, ys in curves.items():
        line, = ax.plot(range(1, len(ys) + 1), ys, label=f"{label} (mean)")
        ax.plot(range(1, len(ys) + 1), medians[label], ls="--", color=line.get_color(), label=f"{label} (median)")
    ax.set_yscale("log")
    ax.set_xlabel("application")
    ax.set_ylabel("query loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, path, dpi=120)


class WeightPictures(Analysis):
    name = "weights"

    class Config(AnalysisConfig):
        learner: str = Field("lsa", description="the trained learner")

    def run(self, ctx: AnalysisContext) -> dict:
        trained = plain_lsa(ctx.learner(self.config.learner), self.name)
        gd: LSAGD = ctx.learner(f"lsa-gd[steps={trained.config.layers}]")
        dx, dy = trained.model.dx, trained.model.dy
        etas, _ = gd.gd.rates()
        rows = []
        for k, ((kq, pv), eta) in enumerate(zip(products(trained.model), etas)):
            s = float(kq.diagonal()[:dx].mean())
            rows.append((f"layer {k + 1}", kq / s, pv * s, *gd_products(dx, dy, eta)))
        path = ctx.figure_path(f"weights-{trained.label}")
        plot_weights(rows, path, trained.label)
        return {"learner": trained.label, "figure": str(path)}


def plot_weights(rows, path, title: str) -> None:
    fig, axes = subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    names = ["trained W_KQ (rescaled)", "trained W_PV (rescaled)", "GD W_KQ", "GD W_PV"]
    for r, (label, *mats) in enumerate(rows):
        for c, (m, name) in enumerate(zip(mats, names)):
            lim = float(m.abs().max()) or 1.0
            im = axes[r, c].imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[r, c].set_title(f"{label}: {name}", fontsize=8)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            fig.colorbar(im, ax=axes[r, c], fraction=0.046)
    fig.suptitle(title, fontsize=9)
    save(fig, path, dpi=110)


@iclbench.hookimpl
def register_analyses(register) -> None:
    for cls in (Interpolation, RepeatedApplication, WeightPictures):
        register(cls)
