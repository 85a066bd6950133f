"""The tables of a suite's site page (`site`), from leaderboard.json's rows: per evaluation column
the learners' scores and their comparisons against each reference, the links between columns,
and the tuned hyperparameters.

Column headers are the metrics' human labels and learners rank by the ranking metric in its
direction, both from the metric registry (`metric_registry`), as the Markdown's row order is;
a cell reads as it does in leaderboard.md (`tables.cell_text`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from iclbench import report_text
from iclbench.metric_registry import RANK_BY, metric, rank_key
from iclbench.provenance import number
from iclbench.site_html import esc, table, td, th
from iclbench.tables import cell_text as board_cell_text


@dataclass
class Column:
    """One evaluation column of a suite: its leaderboard.json rows keyed by (learner, metric, reference)."""

    group: str
    task: str
    cells: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def metrics(self, referenced: bool) -> list[str]:
        """The metrics measured against a reference (or not), in leaderboard.json's order."""
        return list(dict.fromkeys(m for (_, m, ref) in self.cells if bool(ref) == referenced))

    def references(self) -> list[str]:
        return sorted({ref for (_, _, ref) in self.cells if ref})

    def learners(self) -> list[str]:
        """Learners by the ranking metric (`metric_registry.RANK_BY`, the loss): finished ones first,
        best first in its direction, then diverged, then failed; ties by name (`rank_key`)."""
        def key(name: str) -> tuple:
            c = self.cells.get((name, RANK_BY, ""))
            return rank_key(name, None if c is None else c["status"], None if c is None else c["mean"])

        return sorted({name for (name, _, _) in self.cells}, key=key)


def suite_columns(rows: list[dict[str, Any]]) -> dict[str, list[Column]]:
    """suite -> its evaluation columns, suites by name, columns in leaderboard.json's (canonical) order."""
    suites: dict[str, dict[tuple[str, str], Column]] = {}
    for r in rows:
        column = suites.setdefault(r["suite"], {}).setdefault((r["group"], r["task"]), Column(r["group"], r["task"]))
        column.cells[(r["learner"], r["metric"], r["reference"])] = r
    return {suite: list(columns.values()) for suite, columns in sorted(suites.items())}


def cell_text(row: dict[str, Any]) -> str:
    """A cell as leaderboard.md writes it (`tables.cell_text`), from a leaderboard.json row."""
    def real(x: Any) -> float:
        return math.nan if x is None else float(x)

    cell = SimpleNamespace(status=row["status"], nonfinite=row["nonfinite"], mean=real(row["mean"]),
                           ci95=real(row.get("ci95")), seeds=row.get("seeds"), failed_seeds=row.get("failed_seeds"),
                           metric=row.get("metric", RANK_BY))
    return board_cell_text(cell, None)


def value_td(row: dict[str, Any] | None) -> str:
    """A metric's cell, sorted by its mean when it has a finished one."""
    if row is None:
        return td("")
    finished = row["status"] == "ok" and row["mean"] is not None
    return td(cell_text(row), row["mean"] if finished else None)


def count_tds(row: dict[str, Any]) -> list[str]:
    """The seeds and evaluation tasks per seed behind a cell (tasks: a range as text when seeds differ)."""
    tasks = row.get("tasks")
    counted = td("" if tasks is None else tasks, tasks if isinstance(tasks, int) else None)
    return [td(row["seeds"], row["seeds"]), counted]


def scores_table(column: Column) -> str:
    """Learners x the metrics measured on their own (loss first), with the seeds and tasks of each row."""
    metrics = column.metrics(referenced=False)
    head = [th("learner")] + [th(metric(m).shown, m) for m in metrics] + [th("seeds"), th("tasks")]
    rows = []
    for learner in column.learners():
        cells = [column.cells.get((learner, m, "")) for m in metrics]
        present = [c for c in cells if c is not None]
        if present:
            rows.append([td(learner)] + [value_td(c) for c in cells] + count_tds(present[0]))
    return table(head, rows)


def comparisons_table(column: Column) -> str:
    """(learner, reference) x the metrics measured against the reference on the same tasks: the
    paired loss difference with its paired CI, and the alignment metrics."""
    metrics = column.metrics(referenced=True)
    if not metrics:
        return ""
    head = [th("learner"), th("reference")] + [th(metric(m).shown, m) for m in metrics] + [th("seeds")]
    rows = []
    for ref in column.references():
        for learner in column.learners():
            cells = [column.cells.get((learner, m, ref)) for m in metrics]
            present = [c for c in cells if c is not None]
            if present:
                seeds = present[0]["seeds"]
                rows.append([td(learner), td(ref)] + [value_td(c) for c in cells] + [td(seeds, seeds)])
    return ("<p>Against a reference learner, on the same evaluation tasks: Δ loss is this learner's loss minus "
            "the reference's, with the paired CI (below zero: lower loss than the reference).</p>\n"
            + table(head, rows))


def ci_note(columns: list[Column]) -> str:
    """What the ± means on a suite's page."""
    return report_text.ci_note(c["ci_over"] for col in columns for c in col.cells.values() if c.get("ci_over"))


def column_title(column: Column) -> str:
    return f"{column.group or 'in distribution'}: {column.task}"


def contents(columns: list[Column], plots: bool) -> str:
    """Links to the ranking, to each shift group's pivot (then its columns' full tables, one line
    per group) and to the plots."""
    groups: dict[str, list[str]] = {}
    for i, column in enumerate(columns):
        groups.setdefault(column.group, []).append(f'<a href="#column-{i}">{esc(column.task)}</a>')
    pivots = [g for g in groups if g]
    items = []
    for group, links in groups.items():
        head = (f'<a href="#group-{pivots.index(group)}">{esc(group)}</a>' if group
                else '<a href="#best">in distribution</a>')
        items.append(f"<li>{head}: {', '.join(links)}</li>")
    return f"<ul>{''.join(items)}</ul>" + ('\n<p><a href="#plots">Plots</a></p>' if plots else "")


def hyperparameter_table(suite: str, prov: dict[str, Any]) -> str:
    """The hyperparameters tuned on `suite`'s training tasks, per learner and seed (leaderboard.json's provenance)."""
    rows = []
    for learner, info in sorted((prov.get("learners") or {}).items()):
        for seed, values in ((info.get("hyperparameters") or {}).get(suite) or {}).items():
            text = ("; ".join(f"{k} {number(v)}" for k, v in values.items()) if isinstance(values, dict)
                    else "differs between records: " + json.dumps(values))
            rows.append([td(learner), td(seed, float(seed) if seed.lstrip("-").isdigit() else None), td(text)])
    if not rows:
        return ""
    return ("<h2 id=\"hyperparameters\">Tuned hyperparameters</h2>\n<p>Tuned on training tasks, never on "
            "evaluation tasks.</p>\n" + table([th("learner"), th("seed"), th("hyperparameters")], rows))
