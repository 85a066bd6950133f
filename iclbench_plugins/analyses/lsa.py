"""Analyses of trained LSA models against the GD construction (von Oswald et al. 2023, Sec. 4).

- `interpolation`: rescale the trained products (W_KQ / s, W_PV * s with s the mean of W_KQ's
  first d diagonal entries), average them with the construction, report the losses.
- `repeated`: apply a trained one-layer model T times with dampening lambda, beside GD; also
  undamped (lambda = 1, where tasks with a large curvature diverge) and over a sweep of lambda.
- `weights`: W_KQ and W_PV of the trained model beside the construction it should match (GD, or
  GD++ for a recurrent model), as a PNG.
- `label-coupling`: the trained model with the entries that couple the label zeroed (in W_KQ, in
  W_PV, in both), scored beside it and the construction on every column: what carries an
  out-of-distribution gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import Analysis, AnalysisConfig, AnalysisContext, decorate, save, styles, subplots, task_losses
from iclbench_plugins.transformers.nn.constructions import gd_products
from iclbench_plugins.transformers.lsa import LSAGD, TransformerLearner, predict_with
from iclbench_plugins.transformers.nn.model import InContextTransformer, tokens


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


def with_construction(ctx: AnalysisContext, spec: str, analysis: str) -> tuple[TransformerLearner, str, LSAGD]:
    """The trained LSA `spec`, the construction it should match ("gd", or "gd++" for a recurrent
    model) and that construction's learner with the same number of steps."""
    trained = plain_lsa(ctx.learner(spec), analysis)
    kind = "gd++" if trained.config.recurrent else "gd"
    return trained, kind, ctx.learner(f"lsa-{kind}[steps={trained.config.layers}]")


def loss_of(model: InContextTransformer, episode: iclbench.Episode, steps: int | None = None) -> float:
    with torch.no_grad():
        return float(task_losses(predict_with(model, episode, steps), episode.query_y).mean())


class Interpolation(Analysis):
    """A trained LSA's weights interpolated towards its construction's (GD; GD++ for a recurrent
    model, App A.3): the interpolated model's loss (Fig. 2's and Fig. 3's interpolated models)."""

    name = "interpolation"

    class Config(AnalysisConfig):
        learner: str = Field("lsa", description="the trained learner, e.g. lsa[layers=2]")
        alpha: float = Field(0.5, ge=0, le=1, description="weight of the construction in the average")

    def run(self, ctx: AnalysisContext) -> dict:
        trained, kind, construction = with_construction(ctx, self.config.learner, self.name)
        ep = ctx.episode().to(dtype=torch.float64)
        etas, gammas = construction.gd.rates()
        model, scales = interpolated(trained, etas, ep.dx, ep.dy, self.config.alpha, gammas)
        return {
            "learner": trained.label, "alpha": self.config.alpha, "scales": scales, "construction": kind,
            "gd_eta": etas, "gd_gamma": gammas,
            "loss_trained": loss_of(trained.model, ep),
            "loss_construction": loss_of(construction.constructed(ep.dx, ep.dy), ep),
            "loss_interpolated": loss_of(model, ep),
        }


def interpolated(trained: TransformerLearner, etas: list[float], dx: int, dy: int,
                 alpha: float, gammas: list[float] | None = None) -> tuple[InContextTransformer, list[float]]:
    """The model whose products average the trained ones, rescaled by s = the mean of W_KQ's
    first dx diagonal entries (W_KQ / s, W_PV * s), with the construction's (GD, or GD++ with
    `gammas`, App A.3), weight `alpha` on the construction; and the scales s per layer."""
    mixed, scales = [], []
    for k, ((kq, pv), eta) in enumerate(zip(products(trained.model), etas)):
        s = float(kq.diagonal()[:dx].mean())
        ckq, cpv = gd_products(dx, dy, eta, 0.0 if gammas is None else gammas[k])  # (D, D) each
        mixed.append(((1 - alpha) * kq / s + alpha * ckq, (1 - alpha) * pv * s + alpha * cpv))
        scales.append(s)
    return from_products(dx, dy, mixed), scales


SWEEP = (0.25, 0.5, 0.75, 1.0)  # damping values whose loss after T applications `repeated` reports
CEILING = 1e3  # the repeated-application axes stop at this multiple of the first application's loss


class RepeatedApplication(Analysis):
    """One trained layer applied again and again with damping, against that many GD steps (Fig. 3)."""

    name = "repeated"

    class Config(AnalysisConfig):
        learner: str = Field("lsa", description="a trained one-layer learner")
        steps: int = Field(50, ge=1, description="T, how often the layer is applied")
        damping: float = Field(0.75, gt=0, description="lambda: each application adds lambda times the update")

    def run(self, ctx: AnalysisContext) -> dict:
        """Losses over T applications at the configured damping (`loss`, `median_loss`, `diverged_tasks`);
        undamped (lambda = 1, the paper's Fig. 10: `undamped`); the final losses over the damping
        sweep SWEEP (`sweep`, `sweep_median`); and how many tasks the damped GD step cannot converge
        on (`unstable_tasks`: lambda eta times the largest eigenvalue of X^T X / N above 2)."""
        trained = ctx.learner(self.config.learner)
        if trained.config.layers != 1 or trained.config.recurrent:
            raise ValueError(f"analysis 'repeated' needs a one-layer learner, got {trained.label!r}")
        gd = ctx.learner("lsa-gd")
        ep = ctx.episode().to(dtype=torch.float64)  # undamped losses grow geometrically: room before they overflow
        models = {"trained": trained.model, "gd": gd.constructed(ep.dx, ep.dy)}
        T, lam = self.config.steps, self.config.damping
        runs = {x: {label: dampened_losses(m, ep, T, x) for label, m in models.items()}  # (T, B) each
                for x in sorted({*SWEEP, lam})}
        eta = gd.gd.rates()[0][0]
        curves, medians, diverged = summarize(runs[lam])
        path = ctx.figure_path(f"repeated-{trained.label}")
        plot_repeated(runs, lam, path, trained.label)
        return {"learner": trained.label, "damping": lam, "loss": curves, "median_loss": medians,
                "diverged_tasks": diverged, "tasks": ep.batch_size, "figure": str(path),
                "undamped": dict(zip(("loss", "median_loss", "diverged_tasks"), summarize(runs[1.0]))),
                "sweep": {f"{x:g}": {k: float(v[-1].mean()) for k, v in r.items()} for x, r in runs.items()},
                "sweep_median": {f"{x:g}": {k: float(v[-1].median()) for k, v in r.items()} for x, r in runs.items()},
                "gd_eta": eta, "unstable_tasks": {f"{x:g}": int(unstable(ep, eta * x).sum()) for x in runs}}


def summarize(losses: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    """Mean and median curves over tasks, and the tasks whose last loss is above their first, per model."""
    return ({k: v.mean(1).tolist() for k, v in losses.items()}, {k: v.median(1).values.tolist() for k, v in losses.items()},
            {k: int((v[-1] > v[0]).sum()) for k, v in losses.items()})


def unstable(ep: iclbench.Episode, rate: float) -> torch.Tensor:
    """(B,) bool: tasks on which GD steps of size `rate` (damping times eta) diverge.

    The context residuals evolve as R <- (I - rate X X^T / N) R, so a task diverges when
    rate times the largest eigenvalue of X^T X / N (the same as X X^T / N's) exceeds 2.
    """
    S = ep.context_x.double().transpose(1, 2) @ ep.context_x.double() / ep.n_context  # (B, d, d)
    return rate * torch.linalg.eigvalsh(S)[:, -1] > 2


def dampened_losses(model: InContextTransformer, ep: iclbench.Episode, T: int, lam: float) -> torch.Tensor:
    """(T, B) query loss of every task after each of T applications of the first layer, damped:
    y <- y + lam * (update of y).

    Only the label channel moves, as in the reference code: the inputs stay the data, so a
    trained layer's small input updates cannot compound over T applications. A trained layer's
    scores have small label-label terms, so undamped its divergence turns super-exponential and
    can overflow: such a task's loss is inf from then on (never NaN).
    """
    model.to(device=ep.device, dtype=ep.context_x.dtype)
    z = tokens(ep.context_x, ep.context_y, ep.query_x)  # (B, N+1, D)
    block, out = model.block(0), []
    with torch.no_grad():
        for _ in range(T):
            dy = block(z, ep.n_context, query_only=False)[..., model.dx:] - z[..., model.dx:]  # (B, N+1, dy)
            z = torch.cat([z[..., : model.dx], z[..., model.dx:] + lam * dy], dim=-1)
            out.append(task_losses(-z[:, -1, model.dx:], ep.query_y))
    losses = torch.stack(out)  # (T, B)
    return torch.where(losses.isnan(), torch.inf, losses)  # NaN only follows an overflow (inf - inf)


def plot_repeated(runs: dict[float, dict[str, torch.Tensor]], lam: float, path, learner: str) -> None:
    """Three panels: mean and median loss per application at damping `lam`, the same undamped
    (lambda = 1), and the mean and median loss after the last application against lambda. The
    axes stop at CEILING times the first loss: a curve leaving the top diverges, and a final
    loss above it is marked at the top with its value."""
    fig, axes = subplots(1, 3, figsize=(14, 3.9))
    look = styles([learner, "gd"])
    colors = {"trained": look[learner]["color"], "gd": look["gd"]["color"]}  # the learners' own colours
    names = {"trained": "trained layer", "gd": "GD construction"}
    top = CEILING * max(float(losses[0].mean()) for r in runs.values() for losses in r.values())
    for ax, x in zip(axes[:2], (lam, 1.0)):
        low = min(float(losses.median(1).values.min()) for losses in runs[x].values())
        for label, losses in runs[x].items():  # (T, B)
            steps = range(1, losses.shape[0] + 1)
            ax.plot(steps, losses.mean(1).cpu(), color=colors[label], label=f"{names[label]}: mean over tasks")
            ax.plot(steps, losses.median(1).values.cpu(), color=colors[label], ls="--", label=f"{names[label]}: median")
        what = "undamped, the paper's Fig. 10" if x == 1.0 else "damped"
        decorate(ax, "application t", "query loss after t applications", f"λ = {x:g} ({what})", log=True, size=8)
        ax.set_ylim(low / 2, min(ax.get_ylim()[1], top))
    lams = sorted(runs)
    for row, label in enumerate(colors):
        finals = [runs[x][label][-1] for x in lams]  # (B,) each
        for stat, marker, ls in (("mean", "o", "-"), ("median", "s", "--")):
            ys = [float(f.mean() if stat == "mean" else f.median()) for f in finals]
            axes[2].plot(lams, ys, color=colors[label], marker=marker, ls=ls, mfc="none" if stat == "median" else None,
                         label=f"{names[label]}: {stat}")
            for x, y in zip(lams, ys):
                if not y <= top:  # above the axis, or infinite
                    axes[2].annotate(f"{y:.2g}", (x, top), xytext=(-6, -14 - 10 * row), textcoords="offset points", ha="right",
                                     fontsize=6, color=colors[label], arrowprops={"arrowstyle": "->", "color": colors[label]})
    T = runs[lam]["gd"].shape[0]
    decorate(axes[2], "damping λ", f"query loss after T = {T} applications", "loss after T against damping", log=True, size=8)
    axes[2].set_ylim(top=min(axes[2].get_ylim()[1], top))
    fig.suptitle(f"{learner} applied repeatedly: y ← y + λ · (layer's update of y); a curve leaving the top diverges",
                 fontsize=10)
    save(fig, path, dpi=110)


class WeightPictures(Analysis):
    """W_KQ and W_PV of a trained LSA beside the construction it should match: GD for untied
    layers, GD++ (with its tuned eta and gamma) for a recurrent model, whose tied layer learns
    the curvature correction: W_PV's x-block near -gamma I."""

    name = "weights"

    class Config(AnalysisConfig):
        learner: str = Field("lsa", description="the trained learner")

    def run(self, ctx: AnalysisContext) -> dict:
        trained, kind, reference = with_construction(ctx, self.config.learner, self.name)
        c = trained.config
        etas, gammas = reference.gd.rates()
        layers = products(trained.model)[: 1 if c.recurrent else c.layers]  # a tied model: its one layer
        rows = weight_rows(layers, etas, gammas or [0.0] * len(etas), trained.model.dx, trained.model.dy)
        path = ctx.figure_path(f"weights-{trained.label}")
        plot_weights(rows, path, trained.label, kind.upper(), c.recurrent)
        return {"learner": trained.label, "figure": str(path), "construction": kind, "eta": etas, "gamma": gammas,
                "scales": [r.scale for r in rows], "trained_eta": [r.eta for r in rows],
                "trained_gamma": [r.gamma for r in rows]}


@dataclass
class WeightRow:
    """One layer's trained products rescaled by s (W_KQ / s, W_PV * s: the same layer) beside the
    construction's, with the construction's rate and correction and those the trained layer implies."""

    name: str
    dx: int
    kq: torch.Tensor  # (D, D)
    pv: torch.Tensor  # (D, D)
    ref_kq: torch.Tensor  # (D, D)
    ref_pv: torch.Tensor  # (D, D)
    ref_eta: float
    ref_gamma: float
    scale: float
    eta: float  # minus the mean label diagonal of W_PV * s
    gamma: float  # minus the mean diagonal of the x-block of W_PV * s


def weight_rows(layers: list[tuple[torch.Tensor, torch.Tensor]], etas: list[float], gammas: list[float],
                dx: int, dy: int) -> list[WeightRow]:
    """A WeightRow per trained layer (W_KQ, W_PV), against the construction with rate etas[k] and
    correction gammas[k]; s is the mean of W_KQ's first dx diagonal entries (1 in the construction).
    A single layer given for several rates is a tied layer, compared with the first step's rates."""
    rows = []
    tied = len(layers) == 1 and len(etas) > 1
    for k, (kq, pv) in enumerate(layers):
        s = float(kq.diagonal()[:dx].mean())
        pv = pv * s  # (D, D)
        rows.append(WeightRow(f"layers 1-{len(etas)} (tied)" if tied else f"layer {k + 1}", dx, kq / s, pv,
                              *gd_products(dx, dy, etas[k], gammas[k]), etas[k], gammas[k], s,
                              float(-pv[dx:, dx:].diagonal().mean()), float(-pv[:dx, :dx].diagonal().mean())))
    return rows


def plot_weights(rows: list[WeightRow], path, title: str, construction: str, curvature: bool) -> None:
    """Per layer: trained W_KQ and W_PV beside the construction's, each pair on one colour scale;
    with `curvature` (GD++) a second row zooms into W_PV's x-block, whose diagonal is -gamma in
    the construction (invisible on the full matrix's scale, set by -eta), and plots its diagonal."""
    per_row = 2 if curvature else 1
    fig, axes = subplots(per_row * len(rows), 4, figsize=(13, 3.0 * per_row * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        top = axes[per_row * r]
        matrix_pair(fig, top[0], top[1], row.kq, row.ref_kq, [f"{row.name}: trained W_KQ / s", f"{construction} W_KQ"])
        matrix_pair(fig, top[2], top[3], row.pv, row.ref_pv,
                    [f"{row.name}: trained W_PV · s", f"{construction} W_PV (label entry −η = {-row.ref_eta:.3g})"])
        if not curvature:
            continue
        bottom, x = axes[per_row * r + 1], slice(0, row.dx)
        matrix_pair(fig, bottom[0], bottom[1], row.pv[x, x], row.ref_pv[x, x],
                    [f"{row.name}: trained W_PV · s, x-block", f"{construction} W_PV x-block = −γ I"])
        diag = row.pv[x, x].diagonal()  # (dx,)
        bottom[2].plot(range(1, row.dx + 1), diag.numpy(), "o", label=f"trained (mean {-row.gamma:.3g})")
        bottom[2].axhline(-row.ref_gamma, color="tab:red", ls="--", label=f"{construction}: −γ = {-row.ref_gamma:.3g}")
        bottom[2].axhline(0.0, color="0.5", lw=0.8)
        decorate(bottom[2], "input coordinate i", "(W_PV · s)_ii", "x-block diagonal against −γ", size=8)
        bottom[3].set_axis_off()
    rates = f"η = {rows[0].ref_eta:.3g}" + (f", γ = {rows[0].ref_gamma:.3g}" if curvature else "")
    fig.suptitle(f"{title}: trained weights, rescaled by s (the mean x-diagonal of W_KQ), beside the {construction} "
                 f"construction ({rates})", fontsize=10)
    save(fig, path, dpi=110)


def matrix_pair(fig, ax_a, ax_b, a: torch.Tensor, b: torch.Tensor, titles: list[str]) -> None:
    """Two matrices on one symmetric colour scale, so equal entries look equal."""
    lim = max(float(a.abs().max()), float(b.abs().max())) or 1.0
    for ax, m, title in ((ax_a, a, titles[0]), (ax_b, b, titles[1])):
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)


def without_label_coupling(kq: torch.Tensor, pv: torch.Tensor, dx: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_KQ, W_PV) with the entries that couple the label zeroed, where the construction has
    zeros: W_KQ's label rows and columns ("kq"), W_PV's x <-> y blocks ("pv"), or both."""
    kq, pv = kq.clone(), pv.clone()  # (D, D) each, D = dx + dy
    if which in ("kq", "both"):
        kq[dx:, :], kq[:, dx:] = 0.0, 0.0
    if which in ("pv", "both"):
        pv[:dx, dx:], pv[dx:, :dx] = 0.0, 0.0
    return kq, pv


class LabelCoupling(Analysis):
    """Where a trained LSA's gap to its construction out of distribution comes from: the losses
    of the trained model and of copies with its label-coupled entries zeroed (in W_KQ, in W_PV,
    in both), beside the construction's (GD, or GD++ for a recurrent model), on every column.
    The loss in distribution is nearly flat along those entries, so training leaves them where
    they start; a larger teacher scale amplifies them."""

    name = "label-coupling"
    VARIANTS = ("kq", "pv", "both")

    class Config(AnalysisConfig):
        learner: str = Field("lsa[layers=2,recurrent=true]", description="the trained learner")

    def run(self, ctx: AnalysisContext) -> dict:
        trained, kind, reference = with_construction(ctx, self.config.learner, self.name)
        dx, dy = trained.model.dx, trained.model.dy
        layers = products(trained.model)
        models = {"trained": from_products(dx, dy, layers)} | {
            v: from_products(dx, dy, [without_label_coupling(kq, pv, dx, v) for kq, pv in layers]) for v in self.VARIANTS}
        tasks = {}
        for ev in ctx.suite.evals:
            ep = ctx.episode(ev).to(dtype=torch.float64)
            tasks[ev.label] = {"group": ev.group, "value": ev.value, "construction": loss_of(reference.constructed(dx, dy), ep),
                               **{name: loss_of(model, ep) for name, model in models.items()}}
        return {"learner": trained.label, "construction": kind, "tasks": tasks}


@iclbench.hookimpl
def register_analyses(register) -> None:
    for cls in (Interpolation, RepeatedApplication, WeightPictures, LabelCoupling):
        register(cls)
