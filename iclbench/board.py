"""Records -> pandas -> Markdown / CSV / JSON tables and PNG plots.

Cells are `mean ± 95 % CI`: over seeds (Student t) when a cell has several, otherwise the CI
over evaluation tasks; every row says how many seeds and tasks stand behind it. Rows are
learners sorted by in-distribution loss; columns are evaluation tasks, one table per suite
and shift group. A diverged cell reads `diverged (inf)` or `diverged (nan)`, a failed one
`failed`; a comparison against a reference that diverged reads `reference diverged`, and
one that is undefined (a cosine against a zero sensitivity) `undefined`. Everything is ordered canonically, never by input order, so records merged from
several folders render the same files whichever folder came first.

Names from the records are escaped in the Markdown and CSV (`escaping`) and made safe file names
(`filenames`); the files are written together or not at all (`outputs.staged`), and a render
that owns its folder prunes only what its own earlier render wrote there (`outputs.prune`).
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from iclbench import outputs, provenance
from iclbench.escaping import csv_frame, md_code, md_frame, md_text, md_tree
from iclbench.filenames import safe_path
from iclbench.merge import ConflictError  # noqa: F401  (raised by render(on_conflict="error"); callers catch it here)
from iclbench.merge import preference, resolve_conflicts, status
from iclbench.metrics import across_seeds
from iclbench.plotting import decorate, save, styles, subplots
from iclbench.prefix_plot import plot_position_alignment, plot_position_curves, plot_prefix_curves

ALIGNMENT = ["pred_diff", "sens_cos", "sens_diff"]
PAIRED = ["loss_diff", "position_loss_diff"]  # this learner's loss minus the reference's, on the same tasks
REFERENCED = PAIRED + ALIGNMENT  # metrics measured against the record's `align_to`
SCORES = {"position_loss": "mean loss over positions (sequence tasks)",
          "accuracy": "accuracy of the prediction's sign (classification tasks)"}
METRICS = ["loss", *SCORES, *PAIRED, *ALIGNMENT]  # row order in the CSV / JSON
FORMATS = ("md", "csv", "json")
WRITER = "leaderboard"  # whose manifest a pruning render reads and writes (outputs.MANIFEST)
EXACT = 1e-6  # a loss this small is float rounding of an exact solver (least squares), not a curve to compare
KEYS = ["suite", "group", "task", "learner", "metric", "reference"]
NOTES = ("reference diverged", "undefined")  # statuses of comparison cells that hold no number, and why
COLUMNS = KEYS + ["mean", "ci95", "ci_over", "seeds", "tasks", "status", "nonfinite", "failed_seeds", "nonfinite_tasks"]


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (record, metric): the long form every table is built from. A failed record has
    no numbers; it gets a row (mean NaN, status failed) for each metric its peers report on the
    same suite and reference, so its cells say `failed` rather than vanish."""
    rank = {id(r): i for i, r in enumerate(sorted(records, key=preference))}
    peers: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if status(r) != "failed":
            peers.setdefault((r["suite"], r.get("align_to") or ""), set()).update(
                m for m in r.get("metrics") or {} if not m.endswith("_ci95"))
    rows = []
    for r in records:
        st, metrics, ref = status(r), r.get("metrics") or {}, r.get("align_to") or ""
        own = [m for m in metrics if not m.endswith("_ci95")]
        names = sorted(peers.get((r["suite"], ref), {"loss"})) if st == "failed" else own
        notes = unscored_comparisons(r, own, peers.get((r["suite"], ref), set())) if st != "failed" else {}
        for metric in names + sorted(notes):
            value, ci = metrics.get(metric), metrics.get(f"{metric}_ci95")
            rows.append({
                "suite": r["suite"], "learner": r["label"], "task": r["task_label"], "group": r.get("group") or "",
                "value": r.get("value"), "in_distribution": bool(r.get("in_distribution", False)), "seed": r["seed"],
                "metric": metric, "mean": math.nan if value is None else float(value),
                "ci95": math.nan if ci is None else float(ci), "reference": ref if metric in REFERENCED else "",
                "status": notes.get(metric, st), "n_tasks": r.get("n_tasks"), "n_nonfinite": int(r.get("n_nonfinite") or 0), "rank": rank[id(r)],
            })
    return pd.DataFrame(rows)


def unscored_comparisons(r: dict[str, Any], own: list[str], peers: set[str]) -> dict[str, str]:
    """Comparison metrics record `r` holds no number for, each with its reason (`NOTES`): all of
    them when its reference diverged, those its record names undefined."""
    out = {m: "undefined" for m in r.get("undefined") or {} if m not in own}
    if r.get("reference_status") == "diverged":
        wanted = set(peers) | {"loss_diff", *ALIGNMENT} | ({"position_loss_diff"} if "position_loss" in own else set())
        out.update({m: "reference diverged" for m in wanted & set(REFERENCED) if m not in own})
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


def fmt(mean: float, ci: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.4g}" if math.isnan(ci) else f"{mean:.4g} ± {ci:.2g}"


def span(values: list[int]) -> str:
    """`3`, or `1–3` when the values differ."""
    values = sorted(set(values))
    if not values:
        return ""
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def cell_text(c: Any, row_seeds: int | None) -> str:
    """A Markdown cell; `row_seeds` (the row's most seeds, given when the row's cells differ in
    seeds) marks each cell with fewer, whose CI then rests on its own seeds or tasks."""
    if c.status == "failed" or c.status in NOTES:
        return c.status
    text = f"diverged ({c.nonfinite})" if c.nonfinite else fmt(c.mean, c.ci95)
    if c.status == "diverged" and not c.nonfinite:
        text = f"diverged ({text})"
    notes = [f"{c.seeds} seed{'s' if c.seeds != 1 else ''}"] if row_seeds is not None and c.seeds != row_seeds else []
    notes += [f"{c.failed_seeds} failed"] if c.failed_seeds else []
    return text + (f" ({', '.join(notes)})" if notes else "")


def learner_order(agg: pd.DataFrame) -> list[str]:
    """Learners by in-distribution loss (the first in-distribution task; else the first task);
    diverged and failed ones after the rest, ties by name."""
    loss = agg[agg.metric == "loss"]
    ind = loss[loss.in_distribution]
    ref = ind if len(ind) else loss
    first = ref[ref.order == ref["order"].min()]
    cells = {r.learner: r for r in first.itertuples()}

    def key(name: str) -> tuple:
        c = cells.get(name)
        if c is None or c.status == "failed" or not math.isfinite(c.mean):
            return (2, 0.0, name)
        return (0 if c.status == "ok" else 1, c.mean, name)

    return sorted(set(loss["learner"]), key=key)


def pivot(agg: pd.DataFrame, metric: str, order: list[str]) -> pd.DataFrame:
    """Learners x tasks of cell texts for one metric, with each row's seeds and tasks per seed."""
    sub = agg[agg.metric == metric].sort_values("order")
    tasks = list(dict.fromkeys(sub["task"]))
    by = {(r.learner, r.task): r for r in sub.itertuples()}
    rows = []
    for name in order:
        cells = [by.get((name, t)) for t in tasks]
        present = [c for c in cells if c is not None]
        if not present:
            continue
        counted = [c.seeds for c in present if c.status != "failed"]
        varies = len(set(counted)) > 1
        seeds = span(counted) + (" (varies)" if varies else "") if counted else "0"
        top = max(counted) if varies else None
        rows.append([name, seeds, span([n for c in present for n in c.n_tasks])]
                    + [cell_text(c, top) if c is not None else "" for c in cells])
    return pd.DataFrame(rows, columns=["learner", "seeds", "tasks"] + tasks)


def table(frame: pd.DataFrame) -> str:
    """A Markdown table of `frame`, every header and cell escaped: a `|` or newline in a label
    from the records cannot shift its columns or split its row."""
    return md_frame(frame).to_markdown(index=False, disable_numparse=True) + "\n"


def markdown_provenance(prov: dict[str, Any]) -> dict[str, Any]:
    """`prov` with every string from the records escaped for Markdown (`md_tree`), so the footer's
    own markup (`<br>`, code spans) is all the markup it holds; an error keeps its lines, of
    which the footer shows the first."""
    safe = md_tree({k: v for k, v in prov.items() if k != "failures"})
    safe["failures"] = [{**md_tree({k: v for k, v in f.items() if k != "error"}),
                         "error": None if f.get("error") is None
                         else "\n".join(md_text(line) for line in str(f["error"]).splitlines())}
                        for f in prov.get("failures") or []]
    return safe


def ci_note(cells: pd.DataFrame) -> str:
    """What the ± means, true for every cell below it."""
    counts = set(cells.loc[cells["status"] != "failed", "seeds"])
    if counts and min(counts) > 1:
        return "95 % CI over seeds (Student t)"
    if counts <= {1}:
        return "95 % CI over evaluation tasks"
    return "95 % CI over seeds (Student t) in cells with several seeds, over evaluation tasks in 1-seed cells"


def markdown(agg: pd.DataFrame, plots: list[str] | tuple[str, ...] = (), prov: dict[str, Any] | None = None) -> str:
    """Every suite: a loss table per shift group, the paired loss differences and the alignment
    tables when present; then links to `plots` (paths relative to the Markdown file) and the
    provenance footer."""
    parts = []
    for suite in sorted(set(agg["suite"])):
        s = agg[agg.suite == suite]
        order, note = learner_order(s), ci_note(s)
        parts.append(f"## Suite {md_code(suite)}\n\nLoss 0.5·‖ŷ − y‖² on the query, mean ± {note}; `seeds`: seeds behind "
                     "the row, `tasks`: evaluation tasks per seed; rows sorted by in-distribution loss.\n")
        loss = s[s.metric == "loss"]
        for group in dict.fromkeys(loss.sort_values("order")["group"]):
            rows = pivot(loss[loss.group == group], "loss", order)
            parts.append(f"### {md_text(group) or 'in distribution'}\n\n" + table(rows))
        for metric, title in SCORES.items():
            m = s[s.metric == metric]
            for group in dict.fromkeys(m.sort_values("order")["group"]):
                rows = pivot(m[m.group == group], metric, order)
                parts.append(f"### {title}: {md_text(group) or 'in distribution'}\n\n" + table(rows))
        for metric in REFERENCED:
            m = s[s.metric == metric]
            for ref in sorted(set(m["reference"])):
                r, code = m[m.reference == ref], md_code(ref)
                if metric == "loss_diff":
                    parts.append(f"### loss difference to {code} (paired, same tasks)\n\nThis learner's loss minus "
                                 f"{code}'s on the same evaluation tasks, mean ± paired {ci_note(r)}; below zero: "
                                 f"lower loss than {code}.\n\n" + table(pivot(r, metric, order)))
                else:
                    parts.append(f"### {md_text(metric)} against {code}\n\n" + table(pivot(r, metric, order)))
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{md_text(Path(p).stem)}]({quote(p)})" for p in plots) + "\n")
    if prov:
        parts.append(provenance.markdown(markdown_provenance(prov)))
    return "\n".join(parts)


def summary(records: list[dict[str, Any]]) -> str:
    """The Markdown tables of one run's records, for the terminal: no plots, no provenance footer."""
    kept, _ = resolve_conflicts(records)
    return markdown(aggregate(to_frame(kept)))


def long_table(agg: pd.DataFrame) -> pd.DataFrame:
    """The CSV / JSON rows: one per cell, by task, learner and metric; `tasks` is the evaluation
    tasks per seed, or their range as text when seeds differ in it."""
    rank = {m: i for i, m in enumerate(METRICS)}
    t = agg.assign(metric_rank=[rank.get(m, len(METRICS)) for m in agg["metric"]],
                   tasks=pd.Series([(n[0] if len(n) == 1 else span(n)) if n else None for n in agg["n_tasks"]],
                                   index=agg.index, dtype=object))
    t["mean"] = t["mean"].where(t["nonfinite"] == "")  # blank / null; `nonfinite` says nan, inf or -inf
    t = t.sort_values(["order", "learner", "metric_rank", "metric", "reference"], kind="stable")
    return t[COLUMNS].reset_index(drop=True)


def json_value(v: Any) -> Any:
    """Native, strict-JSON values: non-finite floats become null (the row's `nonfinite` says which)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return float(f"{v:.10g}") if math.isfinite(v) else None
    return v


GROUP_AXES = {  # shift group -> x-axis label stating the paper's convention
    "input range": "input range α: x ~ U(−α/2, α/2)^d  (α = 1: the training range)",
    "teacher scale": "teacher scale α: W ~ N(0, α² I)  (α = 1: the training teachers)",
    "context size": "context size N: context pairs (x_i, y_i) per task",
    "distractors": "distractors: context labels replaced by N(0, 1) noise",
    "input law": "input law, variance matched to U(−0.5, 0.5)",
    "reference inputs": "context norm a: a random input law per task, context scaled to ‖X‖_F = a (training: ≈ 2.9)",
}


def ratio_reference(agg: pd.DataFrame, suite: str) -> str | None:
    """The learner a suite's shift plots divide by: the records' reference (`align_to`) when there is
    one, else `gd` when the suite scored it (also among several references), else none."""
    refs = sorted(set(agg.loc[(agg.suite == suite) & (agg.reference != ""), "reference"]))
    scored = set(agg.loc[(agg.suite == suite) & (agg.metric == "loss"), "learner"])
    if len(refs) == 1 and refs[0] in scored:
        return refs[0]
    return "gd" if "gd" in scored else None


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


def group_series(g: pd.DataFrame, ref: str | None, order: list[str]) -> tuple[dict, dict, list[str], list[str], list[str]]:
    """What one shift plot draws: learner -> its ok cells by value (loss panel), learner -> (value,
    loss / reference's loss, paired CI / reference's loss) (ratio panel, where the reference is
    not exact: a ratio to float rounding says nothing); then the learners not
    drawn on some cells: exact ones (loss < EXACT, float rounding of an exact solver: `exact`
    names those exact throughout, which are not drawn at all, `partly` the others) and those
    with diverged or failed cells (`broken`)."""
    loss = g[g.metric == "loss"]
    ref_loss = {r.value: r.mean for r in loss[(loss.learner == ref) & (loss.status == "ok")].itertuples()}
    diffs = g[(g.metric == "loss_diff") & (g.reference == (ref or ""))]
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


def plot_groups(agg: pd.DataFrame, out: Path) -> list[Path]:
    """For each shift group: loss against the shifted parameter per learner (distinct marker and
    line style each, so learners on top of each other stay visible) and, below, each learner's
    loss divided by the reference learner's. Cells exact up to float rounding are named in a note,
    not drawn: on a log axis they would squeeze every other curve into a sliver. Diverged and
    failed cells are not drawn either, and their learners are named."""
    paths = []
    groups = agg[(agg.group != "") & agg["value"].notna()]
    for (suite, group), g in groups.groupby(["suite", "group"], sort=True):
        order = learner_order(agg[agg.suite == suite])
        ref = ratio_reference(agg, suite)
        drawn, ratios, exact, partly, broken = group_series(g, ref, order)
        style = styles(order)
        cats = categories(g[g.metric == "loss"])
        slot = {v: i for i, v in enumerate(cats or {})}  # a categorical group's values -> evenly spaced positions

        def x(values) -> list:
            return [slot[v] for v in values] if cats else list(values)

        fig, axes = subplots(2 if ratios else 1, 1, figsize=(7.6, 6.4 if ratios else 3.9), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]} if ratios else None)
        top = axes[0, 0]
        for learner, d in drawn.items():
            ci = d["ci95"].fillna(0)
            lower = ci.clip(upper=d["mean"] * 0.9)  # a log axis cannot show a bar through zero
            top.errorbar(x(d["value"]), d["mean"], yerr=[lower, ci], capsize=2, label=learner, **style[learner])
        decorate(top, "" if ratios else GROUP_AXES.get(group, group), "query loss", f"{suite}: loss against {group}",
                 log=True, legend=False)
        notes = [f"not drawn, loss < {EXACT:g} throughout: {', '.join(exact)}"] if exact else []
        notes += [f"not drawn where loss < {EXACT:g}: {', '.join(partly)}"] if partly else []
        notes += [f"not drawn where diverged or failed: {', '.join(broken)}"] if broken else []
        for i, note in enumerate(notes):
            top.text(0.01, 0.01 + 0.05 * i, note, transform=top.transAxes, fontsize=6)
        if ratios:
            low = axes[1, 0]
            for learner, points in ratios.items():
                vs, rs, cis = zip(*points)
                err = [0.0 if math.isnan(c) else c for c in cis]
                low.errorbar(x(vs), rs, yerr=[[min(e, 0.9 * r) for e, r in zip(err, rs)], err], capsize=2, **style[learner])
            low.axhline(1.0, color="k", lw=0.9)
            decorate(low, GROUP_AXES.get(group, group), f"loss / {ref}'s loss (line: {ref})", "", log=True, legend=False)
        if cats:
            axes[-1, 0].set_xticks(range(len(cats)), list(cats.values()))
        if drawn:
            fig.legend(*top.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
        path = safe_path(out, f"{suite}-{group.replace(' ', '-')}", ".png")
        save(fig, path, dpi=120)
        paths.append(path)
    return paths


def render(records: list[dict[str, Any]], out: str | Path, formats: tuple[str, ...] = FORMATS, plots: bool = True,
           intro: str = "", on_conflict: str = "prefer-most-tasks", prune: bool = False) -> list[Path]:
    """Write the leaderboard files for `records` into `out`; returns the paths written.

    `intro` is a paragraph under the Markdown title. Records of the same measurement whose
    numbers differ are resolved by `on_conflict` (see `merge.resolve_conflicts`; "error" raises
    ConflictError), with one warning listing each conflict. Every file is written under a
    temporary name and all are renamed into place once all are written: a render that fails
    leaves the previous files as they were. `prune`: `out` belongs to this render, which records
    its files in `outputs.MANIFEST` and deletes the plots of the previous pruning render that it
    no longer writes (stale plots); files that no render listed there, a user's among them, stay.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    if not records:
        raise ValueError("no records to render")
    kept, conflicts = resolve_conflicts(records, on_conflict)
    if conflicts:
        warnings.warn(f"{len(conflicts)} conflicting measurement(s), resolved by rule {on_conflict!r}:\n"
                      + "\n".join(f"- {c.describe()}" for c in conflicts), stacklevel=2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(to_frame(kept))
    prov = provenance.collect(kept)
    previous = outputs.owned(out, WRITER) if prune else set()
    with outputs.staged():
        written = write_tables(agg, prov, out, formats, plot_all(agg, kept, out) if plots else [], intro)
        if prune:
            outputs.write_manifest(out, WRITER, written)
    if prune:
        outputs.prune(out, previous, written)
    return written


def plot_all(agg: pd.DataFrame, records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Every plot of the leaderboard: the shift groups, then the curves against context length and position."""
    return plot_groups(agg, out) + plot_prefix_curves(records, out) + plot_position_curves(records, out) \
        + plot_position_alignment(records, out)


def write_tables(agg: pd.DataFrame, prov: dict[str, Any], out: Path, formats: tuple[str, ...], images: list[Path],
                 intro: str) -> list[Path]:
    """Write leaderboard.{md,csv,json} (those in `formats`) into `out`, the Markdown linking
    `images`; returns the tables written followed by `images`."""
    written = []
    if "md" in formats:
        body = markdown(agg, [p.relative_to(out).as_posix() for p in images], prov)
        written.append(outputs.write_text(out / "leaderboard.md",
                                          "# Leaderboard\n\n" + (f"{intro}\n\n" if intro else "") + body))
    long = long_table(agg)
    if "csv" in formats:
        cells = csv_frame(long)  # no text cell a spreadsheet would run as a formula
        written.append(outputs.write_file(out / "leaderboard.csv",
                                          lambda tmp: cells.to_csv(tmp, index=False, float_format="%.8g")))
    if "json" in formats:
        rows = [{k: json_value(v) for k, v in row.items()} for row in long.to_dict(orient="records")]
        doc = {"rows": rows, "provenance": provenance.strict(prov)}
        written.append(outputs.write_text(out / "leaderboard.json", json.dumps(doc, indent=1, allow_nan=False) + "\n"))
    return written + images
