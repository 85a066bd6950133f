"""Figures of error against context length: per evaluation column that records it, each
learner's error relative to the zero predictor at every prefix k, with its 95 % band; and on
sequence columns, each learner's loss at every position t and its alignment to the reference.
The per-position metrics' axis labels and CI companions are the metric registry's."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from iclbench.filenames import safe_path
from iclbench.metric_registry import metric
from iclbench.metrics import across_seeds
from iclbench.plotting import decorate, save, styles, subplots

TOP = 1.5  # the axis stops at 1.5 x the zero predictor's error (as Garg et al.'s figures): worse is off the chart


def prefix_series(records: list[dict[str, Any]], field: str = "prefix_curve") -> dict[tuple[str, str], dict[str, dict[int, dict]]]:
    """(suite, column) -> learner label -> seed -> its stored curve `field`."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get(field) and r.get("status", "ok") == "ok":
            out[(r["suite"], r["task_label"])][r["label"]][r["seed"]] = r[field]
    return out


def draw_curves(ax, learners: dict[str, dict[int, dict]], x: str, y: str, order: list[str] | None = None,
                band: str = "ci95") -> None:
    """Each learner's curve (label -> seed -> stored curve with keys x, y, ci95) on `ax`: the
    mean over seeds with its band (Student t over seeds; one seed: its band over tasks), in the
    learner's own look (`styles`; `order`, the learners of the whole figure when several panels
    share it). A curve that is its own reference (exactly 1 at every x: the zero predictor
    divided by itself) gets no band."""
    look = styles(order or sorted(learners))
    for label, seeds in sorted(learners.items()):
        curves = list(seeds.values())
        xs = curves[0][x]
        stats = [across_seeds([c[y][j] for c in curves], [c[band][j] for c in curves]) for j in range(len(xs))]
        mean = [m for m, _ in stats]
        style = {**look[label], "ms": 3.5}
        ax.plot(xs, mean, label=f"{label} ({len(curves)} seed{'s' if len(curves) > 1 else ''})", **style)
        if any(m != 1.0 for m in mean):
            ax.fill_between(xs, [m - c for m, c in stats], [m + c for m, c in stats], alpha=0.15, color=style["color"])


def draw_prefix_curves(ax, learners: dict[str, dict[int, dict]], title: str, size: int = 8,
                       order: list[str] | None = None) -> None:
    """Error against context length, cut at TOP x the zero predictor's."""
    draw_curves(ax, learners, "k", "error", order)
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.set_ylim(0, TOP)
    decorate(ax, "in-context examples k", f"query error / zero predictor's error (axis cut at {TOP:g})", title, size=size)


def plot_position_curves(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """`<suite>-<column>-loss-vs-position.png` per sequence column: the loss of predicting
    s_{t+1} from s_1..s_t against t, log scale (noise floors and the zero predictor differ by decades)."""
    paths = []
    for (suite, column), learners in sorted(prefix_series(records, "position_curve").items()):
        fig, ax = subplots(figsize=(6.4, 4.2))
        draw_curves(ax, learners, "t", "loss")
        decorate(ax, "position t (states seen)", metric("position_loss").axis, f"{suite}: {column}", log=True)
        paths.append(save(fig, safe_path(out, f"{suite}-{column}", "-loss-vs-position.png"), dpi=110))
    return paths


def alignment_series(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, dict[int, dict]]]:
    """(suite, column, reference) -> learner label -> seed -> {"curve", "sens"} for in-distribution
    sequence records aligned to a reference (the reference itself left out; out-of-distribution
    columns keep their alignment in the tables)."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in records:
        curve, sens = r.get("position_curve") or {}, r.get("position_sensitivity")
        if "pred_diff" in curve and sens and r.get("status", "ok") == "ok" and r["label"] != r.get("align_to") \
                and r.get("in_distribution", True):
            out[(r["suite"], r["task_label"], r["align_to"])][r["label"]][r["seed"]] = {"curve": curve, "sens": sens}
    return out


def plot_position_alignment(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """`<suite>-<column>-alignment-to-<reference>.png` per sequence column with a reference: left,
    ||yhat_t - yhat_ref,t|| at every position; right, the cosine of the input sensitivities
    d yhat_t / d s_t at the measured positions (1: the same local linear map)."""
    paths = []
    for (suite, column, ref), learners in sorted(alignment_series(records).items()):
        fig, (left, right) = subplots(1, 2, figsize=(11, 4.2))
        diffs = {lb: {s: {"t": v["curve"]["t"], "d": v["curve"]["pred_diff"],
                          "ci95": v["curve"].get(metric("pred_diff").ci, [0.0] * len(v["curve"]["t"]))}
                      for s, v in seeds.items()} for lb, seeds in learners.items()}
        draw_curves(left, diffs, "t", "d")
        decorate(left, "position t (states seen)", metric("position_pred_diff").axis.format(ref=ref), f"{suite}: {column}",
                 size=8)
        draw_curves(right, {lb: {s: v["sens"] for s, v in seeds.items()} for lb, seeds in learners.items()},
                    "t", "sens_cos")
        right.axhline(1.0, color="0.5", ls=":", lw=1)
        decorate(right, "position t (states seen)", metric("position_sens_cos").axis.format(ref=ref),
                 "d yhat_t / d s_t", size=8)
        paths.append(save(fig, safe_path(out, f"{suite}-{column}-alignment-to-{ref}", ".png"), dpi=110))
    return paths


def plot_prefix_curves(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """`<suite>-<column>-error-vs-context.png` per column with prefix curves, and
    `<suite>-<column>-accuracy-vs-context.png` where the curves carry the sign accuracy
    (classification tasks: Garg's metric for them, chance at 0.5)."""
    paths = []
    for (suite, column), learners in sorted(prefix_series(records).items()):
        fig, ax = subplots(figsize=(6.4, 4.2))
        draw_prefix_curves(ax, learners, f"{suite}: {column}")
        paths.append(save(fig, safe_path(out, f"{suite}-{column}", "-error-vs-context.png"), dpi=110))
        scored = {k: v for k, v in learners.items() if all("accuracy" in c for c in v.values())}
        if scored:
            fig, ax = subplots(figsize=(6.4, 4.2))
            draw_curves(ax, scored, "k", "accuracy", sorted(learners), band="accuracy_ci95")
            ax.axhline(0.5, color="0.5", ls=":", lw=1)
            decorate(ax, "in-context examples k", "accuracy of the prediction's sign (chance: 0.5)",
                     f"{suite}: {column}")
            paths.append(save(fig, safe_path(out, f"{suite}-{column}", "-accuracy-vs-context.png"), dpi=110))
    return paths
