"""Who is best on an evaluation column, by how much, and whether the gap is significant.

`standings(records, metric)` ranks the learners of one (suite, group, task) column by `metric`
in its direction (`metric_registry`) and tests each against the best one, one-sided (is it
worse?), paired on the same evaluation tasks and seeds, Holm-corrected over the comparisons:
- two or more seeds in common: a paired t-test over seed means (d_s = learner_s - best_s,
  df = n - 1). Every learner is scored on the same tasks for a seed, so seed means pair, and
  their spread carries both task sampling and training randomness;
- one seed: a paired z-test over tasks from the per-task losses when both records carry them
  (`--log-samples`), else from the learner's own paired Δ and CI when the best is its
  reference; otherwise untested, and said so.
A learner whose Holm-adjusted p is at least `ALPHA` is *tied* with the best: not significantly
worse. Heavy tails are flagged where the mean loss exceeds the 1 %-trimmed mean by more than
`HEAVY_TAIL` (Gaussian errors give about 8 %): a handful of tasks then owns the mean, and the
median is shown beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from iclbench.merge import preference, status
from iclbench.metric_registry import headline, metric as registered, rank_key
from iclbench.metrics import across_seeds
from iclbench.student_t import t_sf

ALPHA = 0.05  # family-wise error rate of the comparisons against the best (Holm)
HEAVY_TAIL = 1.5  # mean / 1 %-trimmed mean above which a row is flagged heavy-tailed

TEST_NOTE = (f"Against the best: tied means not significantly worse than the best learner (one-sided paired "
             f"tests on the same tasks and seeds, Holm-corrected over the comparisons, family-wise α = {ALPHA}; "
             "p is Holm-adjusted). With several seeds the test is a paired t-test over seed means; with one seed "
             "a paired z-test over tasks, from per-task losses (marked tasks, written by --log-samples) or from the "
             "learner's paired Δ against the best when the best is its reference (marked paired Δ); untested "
             "otherwise. Heavy-tailed: the mean exceeds the 1 %-trimmed mean by more than "
             f"{HEAVY_TAIL - 1:.0%}, so a few tasks own the mean; the median is shown beside it.")


@dataclass(frozen=True)
class Standing:
    """One learner's place on a column."""

    learner: str
    status: str  # ok, diverged or failed (any diverged seed makes the row diverged)
    mean: float | None
    ci95: float | None
    seeds: int
    median: float | None = None  # the median loss, mean over seeds (the loss only)
    heavy_tail: bool = False
    best: bool = False
    tied: bool | None = None  # not significantly worse than the best; None: untested (or the best)
    p_holm: float | None = None
    test: str = ""  # "seeds", "tasks", "paired Δ" or "" (untested)
    gap: float | None = None  # mean - best, in the metric's worse direction (positive: worse)
    ratio: float | None = None  # mean / best (best / mean where higher is better); None unless both > 0


def headline_metric(records: Iterable[dict[str, Any]]) -> str:
    """The metric a column's learners are ranked by: the loss over positions where the records
    have it (sequence tasks, whose claims use it), else the query loss."""
    return headline(m for r in records for m in (r.get("metrics") or {}))


def by_learner(records: Iterable[dict[str, Any]]) -> dict[str, dict[Any, dict[str, Any]]]:
    """label -> seed -> its record (one per seed: the preferred one where several references
    measured the same learner on the same tasks)."""
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    for r in sorted(records, key=preference):
        out.setdefault(r["label"], {}).setdefault(r["seed"], r)
    return out


def value(r: dict[str, Any], name: str) -> float | None:
    x = (r.get("metrics") or {}).get(name)
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def row_status(seeds: dict[Any, dict[str, Any]], name: str) -> str:
    statuses = [status(r) for r in seeds.values()]
    if all(s == "failed" for s in statuses):
        return "failed"
    if any(s != "ok" for s in statuses) or any(value(r, name) is None for r in seeds.values() if status(r) == "ok"):
        return "diverged"
    return "ok"


def summary(learner: str, seeds: dict[Any, dict[str, Any]], name: str) -> Standing:
    """A learner's mean ± CI over its seeds, with its median and heavy-tail flag."""
    st = row_status(seeds, name)
    if st != "ok":
        return Standing(learner, st, None, None, len(seeds))
    rs = [seeds[s] for s in sorted(seeds, key=str)]
    mean, ci = across_seeds([value(r, name) for r in rs], [value(r, registered(name).ci) or math.nan for r in rs])
    median = trimmed = None
    if name == "loss":
        medians, trims = [value(r, "loss_median") for r in rs], [value(r, "loss_trimmed") for r in rs]
        median = sum(medians) / len(rs) if None not in medians else None
        trimmed = sum(trims) / len(rs) if None not in trims else None
    heavy = trimmed is not None and trimmed > 0 and mean > HEAVY_TAIL * trimmed
    return Standing(learner, st, mean, None if math.isnan(ci) else ci, len(rs), median, heavy)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error control over the comparisons)."""
    order = sorted(pvalues, key=lambda k: (pvalues[k], k))
    out, running, m = {}, 0.0, len(order)
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        out[key] = running
    return out


def one_sided_p(diffs: list[float]) -> float:
    """P(mean difference this large | no difference), one-sided paired t over `diffs` (n >= 2)."""
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0.0:
        return 1.0 if mean <= 0.0 else 0.0
    return t_sf(mean / (sd / math.sqrt(n)), n - 1)


def z_p(diff: float, ci95: float) -> float:
    """One-sided p of a paired mean difference with a normal 95 % half-width."""
    if not ci95 > 0.0:
        return 1.0 if diff <= 0.0 else 0.0
    return t_sf(diff / (ci95 / 1.96), math.inf)


def task_test(root: Path | None, r: dict[str, Any], best: dict[str, Any], sign: float) -> float | None:
    """One seed: the paired z-test over tasks from both records' per-task losses, if stored."""
    if root is None or not r.get("samples") or not best.get("samples"):
        return None
    from iclbench import samples

    if not (samples.present(root, r) and samples.present(root, best)):
        return None
    try:
        a, b = samples.load(root, r)["losses"], samples.load(root, best)["losses"]  # (B,) each, same tasks
    except ValueError:  # a record renamed for display (a reproduction's spec names) no longer matches its file
        return None
    if a.shape != b.shape:
        return None
    d = sign * (a.astype(float) - b.astype(float))  # (B,) paired differences, worse positive
    n = d.size
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    return z_p(float(d.mean()), 1.96 * sd / math.sqrt(n) if n > 1 else 0.0)


def paired_test(name: str, seeds: dict[Any, dict[str, Any]], best_label: str, best: dict[Any, dict[str, Any]],
                root: Path | None) -> tuple[float, str] | None:
    """(one-sided p, which test) of a learner against the best, or None where no test applies."""
    sign = 1.0 if registered(name).lower_is_better else -1.0
    common = sorted(set(seeds) & set(best), key=str)
    if len(common) >= 2:
        return one_sided_p([sign * (value(seeds[s], name) - value(best[s], name)) for s in common]), "seeds"
    if len(common) != 1:
        return None
    r, b = seeds[common[0]], best[common[0]]
    if name == "loss":
        p = task_test(root, r, b, sign)
        if p is not None:
            return p, "tasks"
    diff_name = f"{name}_diff"
    if (r.get("align_to") or "") == best_label and value(r, diff_name) is not None:
        return z_p(sign * value(r, diff_name), value(r, registered(diff_name).ci) or 0.0), "paired Δ"
    return None


def standings(records: Iterable[dict[str, Any]], name: str | None = None, root: Path | None = None) -> list[Standing]:
    """The learners of one column's `records`, best first by `name` (default `headline_metric`),
    each tested against the best (module docstring). `root`: the results folder, where
    per-task samples are looked up."""
    records = list(records)
    name = name or headline_metric(records)
    groups = by_learner(records)
    rows = {label: summary(label, seeds, name) for label, seeds in groups.items()}
    order = sorted(rows, key=lambda k: rank_key(k, rows[k].status, rows[k].mean, name))
    if not order or rows[order[0]].status != "ok":
        return [rows[k] for k in order]
    top = order[0]
    sign = 1.0 if registered(name).lower_is_better else -1.0
    tests = {k: paired_test(name, groups[k], top, groups[top], root) for k in order[1:] if rows[k].status == "ok"}
    adjusted = holm({k: t[0] for k, t in tests.items() if t is not None})
    best = rows[top].mean
    out = []
    for k in order:
        row = rows[k]
        ok = row.status == "ok"
        gap = sign * (row.mean - best) if ok else None
        ratio = ((row.mean / best if sign > 0 else best / row.mean) if ok and best > 0 and row.mean > 0 else None)
        place = {"gap": gap, "ratio": ratio}
        if k == top:
            out.append(replace(row, **place, best=True))
        elif k in adjusted:
            out.append(replace(row, **place, tied=adjusted[k] >= ALPHA, p_holm=adjusted[k], test=tests[k][1]))
        else:
            out.append(replace(row, **place))
    return out


def columns(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(suite, group, task label) -> its records, in canonical order."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault((r["suite"], r.get("group") or "", r["task_label"]), []).append(r)
    return dict(sorted(out.items()))
