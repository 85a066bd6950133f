"""Records -> the long form -> one cell per (suite, group, task, learner, metric, reference).

Every leaderboard table and plot is built from these cells. A cell is `mean ± 95 % CI`: over
seeds (Student t) when it has several, otherwise the CI over evaluation tasks, with the seeds
and tasks behind it. A failed record gives its cells no number (status `failed`), a diverged
seed makes its cell diverged, and a comparison that holds no number says why (`NOTES`).
Cells and learners are ordered canonically, never by input order, so records merged from
several folders give the same cells whichever folder came first. Which metrics are compared
against a reference, and which way is better, is the metric registry's (`metric_registry`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

from iclbench.merge import preference, status
from iclbench.metric_registry import RANK_BY, metric, of_kind, own_metrics, rank_key, referenced
from iclbench.metrics import across_seeds

KEYS = ["suite", "group", "task", "learner", "metric", "reference"]
NOTES = ("reference diverged", "undefined")  # statuses of comparison cells that hold no number, and why


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (record, metric): the long form every table is built from. A failed record has
    no numbers; it gets a row (mean NaN, status failed) for each metric its peers report on the
    same suite and reference, so its cells say `failed` rather than vanish."""
    rank = {id(r): i for i, r in enumerate(sorted(records, key=preference))}
    peers: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if status(r) != "failed":
            peers.setdefault((r["suite"], r.get("align_to") or ""), set()).update(own_metrics(r.get("metrics") or {}))
    keyed = set(referenced())
    rows = []
    for r in records:
        st, metrics, ref = status(r), r.get("metrics") or {}, r.get("align_to") or ""
        own = list(own_metrics(metrics))
        names = sorted(peers.get((r["suite"], ref), {"loss"})) if st == "failed" else own
        notes = unscored_comparisons(r, own, peers.get((r["suite"], ref), set())) if st != "failed" else {}
        for name in names + sorted(notes):
            value, ci = metrics.get(name), metrics.get(metric(name).ci)
            rows.append({
                "suite": r["suite"], "learner": r["label"], "task": r["task_label"], "group": r.get("group") or "",
                "value": r.get("value"), "in_distribution": bool(r.get("in_distribution", False)), "seed": r["seed"],
                "metric": name, "mean": math.nan if value is None else float(value),
                "ci95": math.nan if ci is None else float(ci), "reference": ref if name in keyed else "",
                "status": notes.get(name, st), "n_tasks": r.get("n_tasks"), "n_nonfinite": int(r.get("n_nonfinite") or 0), "rank": rank[id(r)],
            })
    return pd.DataFrame(rows)


def unscored_comparisons(r: dict[str, Any], own: list[str], peers: set[str]) -> dict[str, str]:
    """Comparison metrics record `r` holds no number for, each with its reason (`NOTES`): all of
    them when its reference diverged (a paired one where the record has what it pairs; the
    loss, every scored record has), those its record names undefined."""
    out = {m: "undefined" for m in r.get("undefined") or {} if m not in own}
    if r.get("reference_status") == "diverged":
        scored = set(own) | {"loss"}
        wanted = set(peers) | {m.name for m in of_kind("alignment")} \
            | {m.name for m in of_kind("paired") if m.of in scored}
        out.update({m: "reference diverged" for m in wanted & set(referenced()) if m not in own})
    return out


def nonfinite_kind(x: float) -> str:
    return "" if math.isfinite(x) else "nan" if math.isnan(x) else "inf" if x > 0 else "-inf"


def cell(g: pd.DataFrame) -> dict[str, Any]:
    """One cell from its seeds' rows: failed seeds give no number; any diverged seed makes it diverged."""
    scored = g[g["status"] != "failed"]
    tasks = sorted({int(n) for n in scored["n_tasks"] if n is not None and not pd.isna(n)})
    out = {"seeds": len(scored), "failed_seeds": int((g["status"] == "failed").sum()), "n_tasks": tasks,
           "nonfinite_tasks": int(scored["n_nonfinite"].sum()), "nonfinite": "", "ci_over": ""}
    if not len(scored):
        return {**out, "mean": math.nan, "ci95": math.nan, "status": "failed"}
    noted = scored[scored["status"].isin(NOTES)]
    if len(noted):  # no number for some seed, and why; the seeds with numbers cannot stand for it
        return {**out, "mean": math.nan, "ci95": math.nan, "status": str(noted["status"].iloc[0])}
    means, cis = [float(x) for x in scored["mean"]], [float(x) for x in scored["ci95"]]
    if all(math.isfinite(x) for x in means):
        mean, ci = across_seeds(means, cis)
    else:
        mean, ci = sum(means) / len(means), math.nan
    out["nonfinite"] = nonfinite_kind(mean)
    diverged = out["nonfinite"] or (scored["status"] == "diverged").any()
    if math.isfinite(ci):
        out["ci_over"] = "seeds" if len(scored) > 1 else "tasks"
    return {**out, "mean": mean, "ci95": ci, "status": "diverged" if diverged else "ok"}


def sortable(value: Any) -> tuple:
    """Shift values sort numerically, then as text; a task without one comes last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    return (0, float(value), "") if isinstance(value, numbers.Real) else (1, 0.0, str(value))


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One cell per (suite, group, task, learner, metric, reference): mean ± CI over seeds, with
    `order`, the canonical rank of its (suite, group, task): suites by name; in-distribution tasks
    first, then groups by name; tasks of a group by shifted value, then label."""
    rows = []
    for key, g in frame.groupby(KEYS, sort=True):
        g = g.sort_values(["seed", "rank"]).drop_duplicates("seed", keep="first")  # seed once per cell, whatever the input order
        first = g.iloc[0]
        rows.append({**dict(zip(KEYS, key)), **cell(g), "value": first["value"],
                     "in_distribution": bool(g["in_distribution"].any())})
    agg = pd.DataFrame(rows)
    tasks = agg.drop_duplicates(["suite", "group", "task"])
    ranked = sorted(tasks.itertuples(), key=lambda r: (r.suite, not r.in_distribution, r.group, sortable(r.value), r.task))
    rank = {(r.suite, r.group, r.task): i for i, r in enumerate(ranked)}
    agg["order"] = [rank[k] for k in zip(agg["suite"], agg["group"], agg["task"])]
    return agg


def learner_order(agg: pd.DataFrame) -> list[str]:
    """Learners by their in-distribution cell of the ranking metric (`metric_registry.RANK_BY`,
    the first in-distribution task; else the first task), best first in its direction; diverged
    and failed ones after the rest, ties by name."""
    loss = agg[agg.metric == RANK_BY]
    ind = loss[loss.in_distribution]
    ref = ind if len(ind) else loss
    first = ref[ref.order == ref["order"].min()]
    cells = {r.learner: r for r in first.itertuples()}

    def key(name: str) -> tuple:
        c = cells.get(name)
        return rank_key(name, None if c is None else c.status, None if c is None else c.mean)

    return sorted(set(loss["learner"]), key=key)

