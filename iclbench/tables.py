"""The leaderboard's cells (`cells`) as text: the Markdown tables and the CSV / JSON rows.

Markdown: per suite a loss table per shift group, a table per group of each score, then the
comparisons against each reference (the paired loss difference with its prose, the alignment
metrics by name); links to the plots; the provenance footer. A cell reads `mean ± CI`, or
`diverged (inf)`, `failed`, `reference diverged`, `undefined`, with a note where it rests on
fewer seeds than its row. CSV / JSON: one row per cell, in the canonical order, metrics in the
registry's order (`metric_registry.row_rank`). Names from the records are escaped
(`escaping`): a `|` in a label cannot shift a column.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from iclbench import provenance, report_text
from iclbench.cells import KEYS, NOTES, learner_order
from iclbench.escaping import md_code, md_frame, md_text, md_tree
from iclbench.metric_registry import RANK_BY, metric, of_kind, referenced, row_rank

COLUMNS = KEYS + ["mean", "ci95", "ci_over", "seeds", "tasks", "status", "nonfinite", "failed_seeds", "nonfinite_tasks"]


def fmt(mean: float, ci: float, name: str = RANK_BY) -> str:
    """`mean ± ci` in metric `name`'s number formats."""
    return metric(name).text(mean, ci)


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
    text = f"diverged ({c.nonfinite})" if c.nonfinite else fmt(c.mean, c.ci95, getattr(c, "metric", RANK_BY))
    if c.status == "diverged" and not c.nonfinite:
        text = f"diverged ({text})"
    notes = [f"{c.seeds} seed{'s' if c.seeds != 1 else ''}"] if row_seeds is not None and c.seeds != row_seeds else []
    notes += [f"{c.failed_seeds} failed"] if c.failed_seeds else []
    return text + (f" ({', '.join(notes)})" if notes else "")


def pivot(agg: pd.DataFrame, name: str, order: list[str]) -> pd.DataFrame:
    """Learners x tasks of cell texts for metric `name`, with each row's seeds and tasks per seed."""
    sub = agg[agg.metric == name].sort_values("order")
    tasks = list(dict.fromkeys(sub["task"]))
    by = {(r.learner, r.task): r for r in sub.itertuples()}
    rows = []
    for learner in order:
        cells = [by.get((learner, t)) for t in tasks]
        present = [c for c in cells if c is not None]
        if not present:
            continue
        counted = [c.seeds for c in present if c.status != "failed"]
        varies = len(set(counted)) > 1
        seeds = span(counted) + (" (varies)" if varies else "") if counted else "0"
        top = max(counted) if varies else None
        rows.append([learner, seeds, span([n for c in present for n in c.n_tasks])]
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
    return report_text.ci_note("seeds" if n > 1 else "tasks" for n in cells.loc[cells["status"] != "failed", "seeds"])


def group_tables(s: pd.DataFrame, name: str, order: list[str], title: str) -> list[str]:
    """One table per shift group of metric `name` in suite frame `s`, under `title: group`
    (`title` empty: the group alone)."""
    m = s[s.metric == name]
    parts = []
    for group in dict.fromkeys(m.sort_values("order")["group"]):
        heading = md_text(group) or "in distribution"
        parts.append(f"### {f'{title}: ' if title else ''}{heading}\n\n" + table(pivot(m[m.group == group], name, order)))
    return parts


def comparison_tables(s: pd.DataFrame, order: list[str]) -> list[str]:
    """Per metric keyed by a reference and per reference, its table: the paired loss difference
    with what it means, the others by their name."""
    parts = []
    for name in referenced():
        m = s[s.metric == name]
        for ref in sorted(set(m["reference"])):
            r, code = m[m.reference == ref], md_code(ref)
            if name == "loss_diff":
                parts.append(f"### loss difference to {code} (paired, same tasks)\n\nThis learner's loss minus "
                             f"{code}'s on the same evaluation tasks, mean ± paired {ci_note(r)}; below zero: "
                             f"lower loss than {code}.\n\n" + table(pivot(r, name, order)))
            else:
                parts.append(f"### {md_text(name)} against {code}\n\n" + table(pivot(r, name, order)))
    return parts


def suite_section(agg: pd.DataFrame, suite: str) -> list[str]:
    """A suite's part of leaderboard.md: its loss tables, score tables and comparisons."""
    s = agg[agg.suite == suite]
    order, note = learner_order(s), ci_note(s)
    parts = [f"## Suite {md_code(suite)}\n\n{metric(RANK_BY).heading}, mean ± {note}; `seeds`: seeds behind "
             "the row, `tasks`: evaluation tasks per seed; rows sorted by in-distribution loss.\n"]
    parts += group_tables(s, RANK_BY, order, "")
    for score in of_kind("score"):
        parts += group_tables(s, score.name, order, score.heading)
    return parts + comparison_tables(s, order)


def markdown(agg: pd.DataFrame, plots: list[str] | tuple[str, ...] = (), prov: dict[str, Any] | None = None) -> str:
    """Every suite (`suite_section`); then links to `plots` (paths relative to the Markdown file)
    and the provenance footer."""
    parts = [part for suite in sorted(set(agg["suite"])) for part in suite_section(agg, suite)]
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{md_text(Path(p).stem)}]({quote(p)})" for p in plots) + "\n")
    if prov:
        parts.append(provenance.markdown(markdown_provenance(prov)))
    return "\n".join(parts)


def long_table(agg: pd.DataFrame) -> pd.DataFrame:
    """The CSV / JSON rows: one per cell, by task, learner and metric; `tasks` is the evaluation
    tasks per seed, or their range as text when seeds differ in it."""
    t = agg.assign(metric_rank=[row_rank(m) for m in agg["metric"]],
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
