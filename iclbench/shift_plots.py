"""The leaderboard's shift-group plots: per (suite, shift group), loss against the shifted value
per learner and, below, each learner's loss divided by a reference learner's.

What a group's axis means is paper knowledge, which the core does not hold: a suite file
states it (`[axes]`, group -> label) and the caller passes it in (`axes`, keyed by (suite,
group); `suite_labels.plot_labels` reads them); a group without one is labelled by its name.
Likewise the learner a ratio panel divides by: the records' reference when they have exactly
one, else the suite's declared `ratio_reference` (`ratio_references`, keyed by suite), else no
ratio panel. Cells exact up to float rounding (loss < `EXACT`) are named in a note, not drawn:
on a log axis they would squeeze every other curve into a sliver; diverged and failed cells are
not drawn either, and their learners are named.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from iclbench.cells import learner_order, sortable
from iclbench.filenames import safe_path
from iclbench.metric_registry import RANK_BY, headline, metric
from iclbench.plotting import decorate, save, styles, subplots

EXACT = 1e-6  # a loss this small is float rounding of an exact solver (least squares), not a curve to compare
Series = tuple[dict, dict, list[str], list[str], list[str]]  # what `group_series` returns
Place = Callable[[Sequence[Any], str], list]  # (shift values, learner) -> their x positions
DODGE = 0.6  # a categorical axis spreads its learners' points over this width around each category


def ratio_reference(agg: pd.DataFrame, suite: str, declared: str | None = None) -> str | None:
    """The learner a suite's shift plots divide by: the records' reference (`align_to`) when they
    have exactly one and it was scored, else `declared` (the suite's `ratio_reference`) when it
    was scored, else none."""
    refs = sorted(set(agg.loc[(agg.suite == suite) & (agg.reference != ""), "reference"]))
    scored = set(agg.loc[(agg.suite == suite) & (agg.metric == RANK_BY), "learner"])
    if len(refs) == 1 and refs[0] in scored:
        return refs[0]
    return declared if declared in scored else None


def categories(g: pd.DataFrame) -> dict[Any, str] | None:
    """value -> tick label for a group whose values only index its tasks (`input=laplace` at 2),
    in value order; None when every task label states its value (`N=20` at 20)."""
    labels = dict(sorted(zip(g["value"], g["task"]), key=lambda kv: sortable(kv[0])))
    names = {v: str(t).split("=", 1)[-1] for v, t in labels.items()}
    for v, name in names.items():
        try:
            if float(name) == float(v):
                continue
        except ValueError:
            pass
        return names
    return None


def group_series(g: pd.DataFrame, ref: str | None, order: list[str], name: str = RANK_BY) -> Series:
    """What one shift plot draws: learner -> its ok cells by value (loss panel), learner -> (value,
    loss / reference's loss, paired CI / reference's loss) (ratio panel, where the reference is
    not exact: a ratio to float rounding says nothing); then the learners not
    drawn on some cells: exact ones (loss < EXACT, float rounding of an exact solver: `exact`
    names those exact throughout, which are not drawn at all, `partly` the others) and those
    with diverged or failed cells (`broken`). `name`: the loss drawn (`metric_registry.headline`)."""
    loss = g[g.metric == name]
    ref_loss = {r.value: r.mean for r in loss[(loss.learner == ref) & (loss.status == "ok")].itertuples()}
    diffs = g[(g.metric == f"{name}_diff") & (g.reference == (ref or ""))]
    paired = {(r.learner, r.value): r.ci95 for r in diffs.itertuples()}
    drawn, ratios, exact, partly, broken = {}, {}, [], [], []
    for learner in order:
        d = loss[loss.learner == learner].sort_values("value", key=lambda v: v.map(sortable))
        if (d["status"] != "ok").any():
            broken.append(learner)
        d = d[d["status"] == "ok"]
        if len(d) and (d["mean"] < EXACT).any():
            (exact if (d["mean"] < EXACT).all() else partly).append(learner)
            d = d[d["mean"] >= EXACT]
        if not len(d):
            continue
        drawn[learner] = d
        points = [(r.value, r.mean / ref_loss[r.value], paired.get((learner, r.value), math.nan) / ref_loss[r.value])
                  for r in d.itertuples() if ref_loss.get(r.value, 0) >= EXACT]  # never divide by float rounding
        if ref is not None and learner != ref and points:
            ratios[learner] = points
    return drawn, ratios, exact, partly, broken


def draw_loss_panel(ax: Any, series: Series, style: dict, x: Place, xlabel: str, title: str,
                    name: str = RANK_BY) -> None:
    """The loss `name` of each drawn learner against the shifted value, with a note per kind of
    cell not drawn. `style` per learner (points only, no joining line, on a categorical axis)."""
    drawn, ratios, exact, partly, broken = series
    for learner, d in drawn.items():
        ci = d["ci95"].fillna(0)
        lower = ci.clip(upper=d["mean"] * 0.9)  # a log axis cannot show a bar through zero
        ax.errorbar(x(d["value"], learner), d["mean"], yerr=[lower, ci], capsize=2, label=learner, **style[learner])
    decorate(ax, "" if ratios else xlabel, metric(name).axis, title, log=True, legend=False)
    notes = [f"not drawn, loss < {EXACT:g} throughout: {', '.join(exact)}"] if exact else []
    notes += [f"not drawn where loss < {EXACT:g}: {', '.join(partly)}"] if partly else []
    notes += [f"not drawn where diverged or failed: {', '.join(broken)}"] if broken else []
    for i, note in enumerate(notes):
        ax.text(0.01, 0.01 + 0.05 * i, note, transform=ax.transAxes, fontsize=6)


def draw_ratio_panel(ax: Any, ratios: dict, style: dict, x: Place, xlabel: str, ref: str) -> None:
    """Each learner's loss divided by `ref`'s, with `ref` itself the line at 1."""
    for learner, points in ratios.items():
        vs, rs, cis = zip(*points)
        err = [0.0 if math.isnan(c) else c for c in cis]
        ax.errorbar(x(vs, learner), rs, yerr=[[min(e, 0.9 * r) for e, r in zip(err, rs)], err], capsize=2, **style[learner])
    ax.axhline(1.0, color="k", lw=0.9)
    decorate(ax, xlabel, f"loss / {ref}'s loss (line: {ref})", "", log=True, legend=False)


def plot_group(agg: pd.DataFrame, suite: str, group: str, g: pd.DataFrame, out: Path, xlabel: str,
               ref: str | None) -> Path:
    """One shift group's figure (`<suite>-<group>.png`): the loss panel and, with a reference, the ratio panel."""
    order = learner_order(agg[agg.suite == suite])
    name = headline(g["metric"])
    series = group_series(g, ref, order, name)
    drawn, ratios = series[0], series[1]
    cats = categories(g[g.metric == name])
    style = {k: {**v, "ls": "none"} for k, v in styles(order).items()} if cats else styles(order)
    slot = {v: i for i, v in enumerate(cats or {})}  # a categorical group's values -> evenly spaced positions

    shift = {k: DODGE * ((i + 0.5) / len(order) - 0.5) for i, k in enumerate(order)}  # side by side, not on top

    def x(values: Sequence[Any], learner: str) -> list:
        return [slot[v] + shift[learner] for v in values] if cats else list(values)

    fig, axes = subplots(2 if ratios else 1, 1, figsize=(7.6, 6.4 if ratios else 3.9), sharex=True, squeeze=False,
                         gridspec_kw={"height_ratios": [3, 2]} if ratios else None)
    top = axes[0, 0]
    draw_loss_panel(top, series, style, x, xlabel, f"{suite}: {metric(name).shown} against {group}", name)
    if ratios:
        draw_ratio_panel(axes[1, 0], ratios, style, x, xlabel, ref)
    if cats:
        axes[-1, 0].set_xticks(range(len(cats)), list(cats.values()))
    if drawn:
        fig.legend(*top.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    path = safe_path(out, f"{suite}-{group.replace(' ', '-')}", ".png")
    save(fig, path, dpi=120)
    return path


def plot_groups(agg: pd.DataFrame, out: Path, axes: Mapping[tuple[str, str], str] | None = None,
                ratio_references: Mapping[str, str] | None = None) -> list[Path]:
    """Every shift group's figure (`plot_group`), by suite and group. `axes`: (suite, group) ->
    the x-axis label (default: the group's name); `ratio_references`: suite -> the learner its
    ratio panels divide by where the records do not name one reference (`ratio_reference`)."""
    axes, declared = axes or {}, ratio_references or {}
    paths = []
    groups = agg[(agg.group != "") & agg["value"].notna()]
    for (suite, group), g in groups.groupby(["suite", "group"], sort=True):
        ref = ratio_reference(agg, suite, declared.get(suite))
        paths.append(plot_group(agg, suite, group, g, out, axes.get((suite, group), group), ref))
    return paths
