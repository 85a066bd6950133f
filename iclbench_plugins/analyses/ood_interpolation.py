"""The interpolated model out of distribution (von Oswald et al. 2023, Fig. 6a).

`interpolation-ood` builds the model halfway between a trained one-layer LSA and the GD
construction (as `interpolation` does) and scores it, the trained model and the construction
on the same tasks of every evaluation column of a suite: if training found GD, the average of
the two is GD too, in distribution and out of it.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import iclbench
from iclbench.plugin_api import Analysis, AnalysisContext, decorate, parse_spec, save, styles, subplots
from iclbench_plugins.analyses.lsa import Interpolation, interpolated, loss_of, plain_lsa

MODELS = ("trained", "interpolated")  # drawn as ratios to the construction's loss


class InterpolationOOD(Analysis):
    """The interpolated model of `interpolation` scored on the out-of-distribution columns, as ratios to the construction's loss."""

    name = "interpolation-ood"

    Config = Interpolation.Config  # the trained learner and the construction's weight alpha

    def run(self, ctx: AnalysisContext) -> dict:
        """Per evaluation column: the mean loss of the trained, constructed and interpolated
        models on that column's tasks (the same tasks for all three)."""
        name, overrides = parse_spec(self.config.learner)
        probe = plain_lsa(ctx.catalog.learners[name](overrides), self.name)  # refused before any training
        if probe.config.layers != 1:
            raise ValueError(f"analysis {self.name!r} needs a one-layer learner, got {probe.label!r}")
        trained = ctx.learner(self.config.learner)
        gd = ctx.learner("lsa-gd")
        etas, _ = gd.gd.rates()
        tasks = {}
        for ev in ctx.suite.evals:
            ep = ctx.episode(ev).to(dtype=torch.float64)
            mixed, _ = interpolated(trained, etas, ep.dx, ep.dy, self.config.alpha)
            tasks[ev.label] = {"group": ev.group, "value": ev.value, "trained": loss_of(trained.model, ep),
                               "construction": loss_of(gd.constructed(ep.dx, ep.dy), ep),
                               "interpolated": loss_of(mixed, ep)}
        path = ctx.figure_path(f"interpolation-ood-{trained.label}")
        plot_ratios(tasks, path, f"{trained.label}, seed {ctx.seed}: loss relative to the GD construction")
        return {"learner": trained.label, "alpha": self.config.alpha, "tasks": tasks, "figure": str(path)}


def states_its_value(label: str, value) -> bool:
    """Whether a column's label names its value (`teacher-scale=3` at 3), not only indexes it (`input=laplace`)."""
    try:
        return float(label.split("=", 1)[-1]) == float(value)
    except (TypeError, ValueError):
        return False


def plot_ratios(tasks: dict[str, dict], path, title: str) -> None:
    """One panel per group of columns (the in-distribution column has none): trained and
    interpolated loss over the construction's, against the group's value, or its labels when
    the values only index the columns (input laws)."""
    groups: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for label, t in tasks.items():
        if t["group"] is not None:
            groups[t["group"]].append((label, t))
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_axis_off()
    for ax, (group, members) in zip(axes.flat, sorted(groups.items())):
        members = sorted(members, key=lambda c: c[1]["value"])
        numeric = all(states_its_value(label, t["value"]) for label, t in members)
        xs = [t["value"] for _, t in members] if numeric else list(range(len(members)))
        for model, (color, marker, ls) in zip(MODELS, (("tab:blue", "o", "-"), ("tab:green", "s", "--"))):
            ax.plot(xs, [t[model] / t["construction"] for _, t in members], color=color, marker=marker, ls=ls,
                    mfc="none", label=model)
        ax.axhline(1.0, color=styles(["gd"])["gd"]["color"], ls=":", lw=1, label="GD construction")  # GD's look
        if not numeric:
            ax.set_xticks(xs, [label.split("=", 1)[-1] for label, _ in members], fontsize=7)
        decorate(ax, group, "loss / GD construction's loss", group, size=7)
    fig.suptitle(title, fontsize=9)
    save(fig, path, dpi=110)


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(InterpolationOOD)
