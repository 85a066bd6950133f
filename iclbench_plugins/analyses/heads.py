"""Two softmax heads cancel each other's offset (von Oswald et al. 2023, Fig. 11).

A softmax can only reweight keys, never give them negative weight, so one softmax head cannot
compute the linear GD update sum_n (x_n . x) y_n exactly. The paper's trained two-head softmax
Transformer works around this: per head h, eta_h W_{h,KQ} (the x-block of W_K^T W_Q, scaled by
the y-to-y entry eta_h of P W_V) is nearly diagonal with off-diagonal entries of almost exactly
opposite sign in the two heads, so in the sum over heads they cancel and the sum is diagonal,
as in the GD construction. `softmax-heads` measures that on the first layer of a trained
`softmax-tf[heads=2]` (or more heads), per seed:

- `eta`: per head, the y-to-y entry of P W_V (the mean of the y-block's diagonal if dy > 1);
- `offdiag_cosine`: cosine between the two heads' off-diagonal entries of eta_h W_KQ (-1 is
  perfect cancellation; None unless there are exactly 2 heads);
- `sum_offdiag_ratio`: Frobenius norm of the sum's off-diagonal part over the mean of the
  heads' (0 when they cancel, 2 for identical heads);
- `diag_mean`: mean diagonal entry per head and of the sum;

and a figure, the heads' matrices and their sum on one symmetric colour scale.

W_KQ here is the raw product W_K^T W_Q: the model divides it by sqrt(D) before the softmax, which
scales every head alike. Rows of W_KQ read a key's x-part, columns the query's: the score of key
e_n for query e_t is e_n . W_KQ e_t.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import Analysis, AnalysisConfig, AnalysisContext, parse_spec, save, subplots
from iclbench_plugins.transformers.lsa import TransformerLearner
from iclbench_plugins.transformers.nn.model import InContextTransformer

SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def check_learner(learner: iclbench.Learner, analysis: str) -> None:
    """Refuse (before any training) a learner whose first layer is not softmax attention with
    at least 2 heads."""
    c = learner.config
    attention, heads = getattr(c, "attention", None), getattr(c, "heads", None)
    first = attention[0] if isinstance(attention, list) else attention
    if not isinstance(learner, TransformerLearner) or first != "softmax" or heads is None or heads < 2:
        raise ValueError(f"analysis {analysis!r} needs a Transformer whose first layer is softmax attention "
                         f"with at least 2 heads (e.g. softmax-tf[heads=2]), got {learner.label!r}")


def head_matrices(model: InContextTransformer, layer: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(eta, M) of layer `layer`: eta (H,) the y-to-y entry of each head's P W_V (mean of the
    y-block's diagonal for dy > 1) and M (H, dx, dx) = eta_h times the x-block of W_K^T W_Q."""
    dx, dy = model.dx, model.dy
    kq, pv = (w.detach().double().cpu() for w in model.block(layer).attn.products())  # (H, D, D) each
    y = slice(dx, dx + dy)
    eta = pv[:, y, y].diagonal(dim1=1, dim2=2).mean(-1)  # (H,)
    return eta, eta[:, None, None] * kq[:, :dx, :dx]  # (H,), (H, dx, dx)


def head_statistics(eta: torch.Tensor, mats: torch.Tensor) -> dict:
    """The numbers `softmax-heads` reports for eta (H,) and M (H, dx, dx), as plain floats and lists."""
    H, dx, _ = mats.shape
    total = mats.sum(0)  # (dx, dx)
    off = ~torch.eye(dx, dtype=torch.bool)  # (dx, dx)
    offdiag = mats[:, off]  # (H, dx*(dx-1))
    norms = offdiag.norm(dim=1)  # (H,)
    cosine = None
    if H == 2 and bool((norms > 0).all()):
        cosine = float(offdiag[0] @ offdiag[1] / (norms[0] * norms[1]))
    mean_norm = float(norms.mean())
    ratio = float(total[off].norm()) / mean_norm if mean_norm > 0 else None
    return {"heads": H, "eta": eta.tolist(), "offdiag_cosine": cosine, "sum_offdiag_ratio": ratio,
            "diag_mean": {"heads": mats.diagonal(dim1=1, dim2=2).mean(-1).tolist(),
                          "sum": float(total.diagonal().mean())},
            "matrices": mats.tolist(), "sum_matrix": total.tolist()}


def plot_heads(mats: torch.Tensor, path, title: str) -> None:
    """Each head's eta_h W_{h,KQ} and their sum side by side, one symmetric diverging colour scale."""
    H, dx, _ = mats.shape
    panels = [*mats, mats.sum(0)]  # H + 1 of (dx, dx)
    names = [f"η{h + 1} W{h + 1},KQ".translate(SUBSCRIPTS) for h in range(H)] + ["sum"]
    lim = max(float(m.abs().max()) for m in panels) or 1.0
    fig, axes = subplots(1, H + 2, figsize=(3.3 * (H + 1) + 0.6, 3.6),
                         gridspec_kw={"width_ratios": [1.0] * (H + 1) + [0.06]})
    for ax, m, name in zip(axes, panels, names):
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("query x index", fontsize=8)
        ax.set_ylabel("key x index", fontsize=8)
        if dx <= 16:
            ax.set_xticks(range(dx), [str(i + 1) for i in range(dx)], fontsize=6)
            ax.set_yticks(range(dx), [str(i + 1) for i in range(dx)], fontsize=6)
    fig.colorbar(im, cax=axes[-1])
    fig.suptitle(title, fontsize=10)
    save(fig, path, dpi=110)


class SoftmaxHeads(Analysis):
    """Per head of a softmax Transformer's first layer, eta_h W_{h,KQ}, and their sum (Fig. 11)."""

    name = "softmax-heads"

    class Config(AnalysisConfig):
        learner: str = Field("softmax-tf[heads=2]", description="a trained softmax Transformer with 2 or more heads")

    def run(self, ctx: AnalysisContext) -> dict:
        name, overrides = parse_spec(self.config.learner)
        check_learner(ctx.catalog.learners[name](overrides), self.name)  # refuse before training
        trained = ctx.learner(self.config.learner)
        if not isinstance(trained.model, InContextTransformer):
            raise ValueError(f"analysis {self.name!r} needs an InContextTransformer, got {trained.label!r}")
        eta, mats = head_matrices(trained.model)  # (H,), (H, dx, dx)
        path = ctx.figure_path(self.name)
        plot_heads(mats, path, f"{trained.label}, seed {ctx.seed}: first layer, per head η_h · W_KQ x-block and the sum")
        return {"learner": trained.label, "layer": 1, "figure": str(path), **head_statistics(eta, mats)}


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(SoftmaxHeads)
