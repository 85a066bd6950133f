"""Records -> pandas -> Markdown / CSV / JSON tables and PNG plots.

Cells are `mean ± 95 % CI`: over seeds (Student t) when there are several, otherwise the
CI over evaluation tasks. Rows are learners sorted by in-distribution loss; columns are
evaluation tasks in suite order, one table per suite and shift group.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from iclbench.metrics import across_seeds
from iclbench.plotting import decorate, save, subplots

ALIGNMENT = ["pred_diff", "sens_cos", "sens_diff"]
FORMATS = ("md", "csv", "json")
EXACT = 1e-6  # a loss this small is float rounding of an exact solver (least squares), not a curve to compare


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (record, metric): the long form every table is built from."""
    rows = []
    for order, r in enumerate(records):
        for metric, value in r["metrics"].items():
            if metric.endswith("_ci95"):
                continue
            rows.append({
                "suite": r["suite"], "learner": r["label"], "task": r["task_label"], "group": r.get("group") or "",
                "value": r.get("value"), "in_distribution": r.get("in_distribution", False), "seed": r["seed"],
                "metric": metric, "mean": value, "ci95": r["metrics"].get(f"{metric}_ci95", math.nan),
                "order": order, "reference": (r.get("align_to") or "") if metric in ALIGNMENT else "",
            })
    return pd.DataFrame(rows)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± CI over seeds for each (suite, learner, task, metric)."""
    keys = ["suite", "group", "task", "learner", "metric", "reference"]  # alignment is per reference
    rows = []
    for key, g in frame.groupby(keys, sort=False):
        g = g.drop_duplicates("seed", keep="last")
        mean, ci = across_seeds(g["mean"].tolist(), g["ci95"].tolist())
        first = g.iloc[0]
        rows.append({**dict(zip(keys, key)), "mean": mean, "ci95": ci, "n_seeds": len(g),
                     "value": first["value"], "in_distribution": bool(first["in_distribution"]),
                     "order": int(g["order"].min())})
    return pd.DataFrame(rows)


def fmt(mean: float, ci: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.4g}" if math.isnan(ci) else f"{mean:.4g} ± {ci:.2g}"


def learner_order(agg: pd.DataFrame) -> list[str]:
    """Learners by in-distribution loss (the first in-distribution task; else the first task)."""
    loss = agg[agg.metric == "loss"]
    ind = loss[loss.in_distribution]
    ref = ind if len(ind) else loss
    first_task = ref.sort_values("order")["task"].iloc[0]
    col = ref[ref.task == first_task].set_index("learner")["mean"]
    learners = list(dict.fromkeys(loss.sort_values("order")["learner"]))
    return sorted(learners, key=lambda name: (col.get(name, math.inf), learners.index(name)))


def pivot(agg: pd.DataFrame, metric: str, order: list[str]) -> pd.DataFrame:
    """Learners x tasks of `mean ± ci` strings for one metric."""
    sub = agg[agg.metric == metric].sort_values("order")
    tasks = list(dict.fromkeys(sub["task"]))
    cells = {(r.learner, r.task): fmt(r.mean, r.ci95) for r in sub.itertuples()}
    rows = [[name] + [cells.get((name, t), "") for t in tasks] for name in order if any((name, t) in cells for t in tasks)]
    return pd.DataFrame(rows, columns=["learner"] + tasks)


def markdown(agg: pd.DataFrame) -> str:
    """Every suite: a loss table per shift group, then alignment tables when present."""
    parts = []
    n_seeds = int(agg["n_seeds"].max())
    ci_note = "95 % CI over seeds (Student t)" if n_seeds > 1 else "95 % CI over evaluation tasks"
    for suite, s in agg.groupby("suite", sort=False):
        order = learner_order(s)
        parts.append(f"## Suite `{suite}`\n\nLoss 0.5·‖ŷ − y‖² on the query, mean ± {ci_note}; "
                     f"{n_seeds} seed(s); rows sorted by in-distribution loss.\n")
        for group, g in s.groupby("group", sort=False):
            title = group or "in distribution"
            parts.append(f"### {title}\n\n" + pivot(g, "loss", order).to_markdown(index=False) + "\n")
        for metric in ALIGNMENT:
            m = s[s.metric == metric]
            for ref, r in m.groupby("reference", sort=False):
                parts.append(f"### {metric} against `{ref}`\n\n" + pivot(r, metric, order).to_markdown(index=False) + "\n")
    return "\n".join(parts)


def plot_groups(agg: pd.DataFrame, out: Path) -> list[Path]:
    """For each shift group with numeric values: loss against the shifted parameter, per learner.
    Learners exact up to float rounding on every shift are named in a note, not drawn: on a log
    axis they would squeeze every other curve into a sliver."""
    paths = []
    loss = agg[(agg.metric == "loss") & (agg.group != "") & agg["value"].notna()]
    for (suite, group), g in loss.groupby(["suite", "group"], sort=False):
        fig, ax = subplots(figsize=(5.5, 3.8))
        exact = []
        for learner in learner_order(agg[agg.suite == suite]):
            d = g[g.learner == learner].sort_values("value")
            if len(d) and d["mean"].max() < EXACT:
                exact.append(learner)
            elif len(d):
                ci = d["ci95"].fillna(0)
                lower = ci.clip(upper=d["mean"] * 0.9)  # a log axis cannot show a bar through zero
                ax.errorbar(d["value"], d["mean"], yerr=[lower, ci], marker="o", ms=3, capsize=2, label=learner)
        labels = dict(zip(g["value"], g["task"]))
        if group == "input law":
            ax.set_xticks(list(labels), [labels[v].split("=", 1)[-1] for v in labels])
        decorate(ax, group, "query loss", f"{suite}: loss against {group}", log=True)
        if exact:
            ax.text(0.01, 0.01, f"not drawn, loss < {EXACT:g} throughout: {', '.join(exact)}", transform=ax.transAxes, fontsize=6)
        path = out / f"{suite}-{group.replace(' ', '-')}.png"
        save(fig, path, dpi=120)
        paths.append(path)
    return paths


def render(records: list[dict[str, Any]], out: str | Path, formats: tuple[str, ...] = FORMATS, plots: bool = True,
           intro: str = "") -> list[Path]:
    """Write the leaderboard files for `records` into `out`; returns the paths written.
    `intro` is a paragraph under the Markdown title."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    if not records:
        raise ValueError("no records to render")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(to_frame(records))
    written = []
    if "md" in formats:
        written.append(out / "leaderboard.md")
        written[-1].write_text("# Leaderboard\n\n" + (f"{intro}\n\n" if intro else "") + markdown(agg))
    cols = ["suite", "group", "task", "learner", "metric", "reference", "mean", "ci95", "n_seeds"]
    long = agg.sort_values("order")[cols]
    if "csv" in formats:
        written.append(out / "leaderboard.csv")
        long.to_csv(written[-1], index=False, float_format="%.8g")
    if "json" in formats:
        written.append(out / "leaderboard.json")
        written[-1].write_text(json.dumps(json.loads(long.to_json(orient="records")), indent=1) + "\n")
    if plots:
        written.extend(plot_groups(agg, out))
    return written
