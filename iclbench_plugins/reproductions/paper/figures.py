"""Figures of the paper's sweeps, drawn from a reproduction's records: loss and alignment
against depth (recurrent and untied LSA beside GD-K and GD++-K) and against the size of a
finite training set (App. A.12, Fig 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from iclbench.plugin_api import decorate, Results, save, styles, subplots

Series = dict[int, dict[int, float]]  # x -> seed -> value


def gather(points: dict[int, Callable[[], dict[int, float]]]) -> Series:
    """x -> seed -> value for the points whose records exist (a missing run leaves a gap)."""
    out = {}
    for x, get in points.items():
        try:
            out[x] = get()
        except LookupError:
            continue
    return out


def draw(ax, series: Series, label: str, color: str, marker: str, ls: str = "-") -> None:
    """Each seed as a small dot, the mean over seeds as a line with markers."""
    xs = sorted(series)
    if not xs:
        return
    for x in xs:
        ax.plot([x] * len(series[x]), list(series[x].values()), ls="none", marker=marker, ms=3, color=color, alpha=0.4)
    means = [sum(series[x].values()) / len(series[x]) for x in xs]
    ax.plot(xs, means, ls=ls, marker=marker, color=color, lw=1.4, ms=6, mfc="none", label=label)


def depth_figure(r: Results, folder: Path, recurrent: dict[int, str], untied: dict[int, str]) -> Path | None:
    """Loss of K-layer models and of K steps of GD / GD++ (left), and the models' sensitivity
    cosine with GD++-K (right; with GD-1 at K = 1), K = 1 .. max depth."""
    ks = [1, *sorted(recurrent)]
    gd = lambda K: "gd" if K == 1 else f"gd[steps={K}]"  # noqa: E731
    gdpp = lambda K: "gd" if K == 1 else f"gd++[steps={K}]"  # noqa: E731  one GD++ step predicts as GD
    model = {"recurrent LSA": {1: "lsa", **recurrent}, "untied LSA": {1: "lsa", **untied}}
    loss = {"GD-K": gather({K: (lambda K=K: r.by_seed(gd(K), "linear")) for K in ks}),
            "GD++-K": gather({K: (lambda K=K: r.by_seed(gdpp(K), "linear")) for K in ks})}
    loss |= {name: gather({K: (lambda s=s: r.by_seed(s, "linear")) for K, s in specs.items()}) for name, specs in model.items()}
    cos = {name: gather({K: (lambda K=K, s=s: r.by_seed(s, "linear", metric="sens_cos", align_to=gdpp(K)))
                         for K, s in specs.items()}) for name, specs in model.items()}
    if not any(len(v) > 1 for v in loss.values()):
        return None
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.8))
    learner = {"GD-K": "gd", "GD++-K": "gd++", "recurrent LSA": "lsa[recurrent=true]", "untied LSA": "lsa"}
    look = styles(list(learner.values()))  # each family in its learner's look, as in every figure
    style = {name: (look[s]["color"], look[s]["marker"], look[s]["ls"]) for name, s in learner.items()}
    for name, series in loss.items():
        draw(a, series, name, *style[name])
    for name, series in cos.items():
        draw(b, series, name, *style[name])
    for ax in (a, b):
        ax.set_xticks(ks)
    decorate(a, "K (layers, or GD steps)", "loss on linear regression (N = d = 10)", "loss against depth", log=True)
    decorate(b, "K (layers)", "sensitivity cosine with GD++-K (K = 1: GD-1)", "alignment against depth")
    fig.suptitle("depth sweep: dots are seeds, lines their mean; untied K = 2..4 train 5000 steps", fontsize=9)
    return save(fig, folder / "linear-depth-sweep.png", dpi=110)


def pool_figure(r: Results, folder: Path, spec: Callable[[int], str], pools: tuple[int, ...]) -> Path | None:
    """Loss on fresh tasks and sensitivity cosine with GD-1 of one LSA layer trained on a
    fixed set of P tasks, against P, beside GD-1 and the same training on fresh tasks."""
    loss = gather({P: (lambda P=P: r.by_seed(spec(P), "linear")) for P in pools})
    cos = gather({P: (lambda P=P: r.by_seed(spec(P), "linear", metric="sens_cos", align_to="gd")) for P in pools})
    if len(loss) < 2:
        return None
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.8))
    look = styles(["lsa[train.pool=P]", "gd", "lsa"])  # the learners' own looks
    pooled = look["lsa[train.pool=P]"]
    draw(a, loss, "LSA trained on P fixed tasks", pooled["color"], pooled["marker"])
    draw(b, cos, "LSA trained on P fixed tasks", pooled["color"], pooled["marker"])
    for name in ("gd", "lsa"):
        color, ls = look[name]["color"], look[name]["ls"]
        try:
            mean = r.mean(name, "linear")
        except LookupError:
            continue
        text = "GD-1" if name == "gd" else "LSA on fresh tasks every step"
        a.axhline(mean, color=color, ls=ls, lw=1.1, label=f"{text}: {mean:.4g}")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(pools), [str(P) for P in pools])
    decorate(a, "P, training tasks (one fixed batch, full-batch training)", "loss on fresh tasks",
             "generalisation against training-set size", log=True)
    decorate(b, "P, training tasks", "sensitivity cosine with GD-1", "alignment against training-set size")
    fig.suptitle("finite training sets (App. A.12): dots are seeds, lines their mean", fontsize=9)
    return save(fig, folder / "linear-training-set-size.png", dpi=110)


def transition_figure(r: Results, folder: Path, models: dict[str, str], step_of: Callable[[list[dict]], float]
                      ) -> Path | None:
    """App A.11, Fig 15 left and centre: each seed's held-out loss over training, one panel per
    model (`models`: panel title -> spec), with the step where its loss is halfway down marked."""
    curves = {title: r.curves(spec, "linear") for title, spec in models.items()}
    if not all(curves.values()):
        return None
    fig, axes = subplots(1, len(models), figsize=(5 * len(models), 3.6), sharey=True, squeeze=False)
    look = styles([f"seed {s}" for c in curves.values() for s in c])
    for ax, (title, seeds) in zip(axes[0], curves.items()):
        for seed, curve in sorted(seeds.items()):
            steps, loss = [row["step"] for row in curve], [row["eval_loss"] for row in curve]
            color = look[f"seed {seed}"]["color"]
            ax.plot(steps, loss, color=color, lw=1.3, label=f"seed {seed}")
            half = step_of(curve)
            ax.axvline(half, color=color, ls=":", lw=1)
        decorate(ax, "training step", "held-out loss", f"{title}: {models[title]}", log=True)
    fig.suptitle("phase transitions (App A.11, Fig 15): each seed's loss; dotted: the step its loss is halfway down",
                 fontsize=9)
    return save(fig, folder / "linear-phase-transitions.png", dpi=110)
