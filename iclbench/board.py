"""Records -> pandas -> Markdown / CSV / JSON tables and PNG plots: the leaderboard render.

Cells are `mean ± 95 % CI`: over seeds (Student t) when a cell has several, otherwise the CI
over evaluation tasks; every row says how many seeds and tasks stand behind it. Rows are
learners sorted by in-distribution loss; columns are evaluation tasks, one table per suite
and shift group. A diverged cell reads `diverged (inf)` or `diverged (nan)`, a failed one
`failed`; a comparison against a reference that diverged reads `reference diverged`, and
one that is undefined (a cosine against a zero sensitivity) `undefined`. Everything is ordered canonically, never by input order, so records merged from
several folders render the same files whichever folder came first.

The parts live by idea: the long form and its cells in `cells`, their text (Markdown, CSV,
JSON rows) in `tables`, the shift-group plots in `shift_plots`, the context-length and position
curves in `prefix_plot`, every metric's name, direction and label in `metric_registry`. This
module renders them together and re-exports the names callers use (`board.aggregate`, ...).

Names from the records are escaped in the Markdown and CSV (`escaping`) and made safe file names
(`filenames`); the files are written together or not at all (`outputs.staged`), and a render
that owns its folder prunes only what its own earlier render wrote there (`outputs.prune`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from iclbench import outputs, provenance
from iclbench.cells import KEYS, NOTES, aggregate, cell, learner_order, nonfinite_kind, sortable, to_frame  # noqa: F401
from iclbench.escaping import csv_frame
from iclbench.merge import ConflictError  # noqa: F401  (raised by render(on_conflict="error"); callers catch it here)
from iclbench.merge import resolve_conflicts
from iclbench.prefix_plot import plot_position_alignment, plot_position_curves, plot_prefix_curves
from iclbench.shift_plots import EXACT, categories, group_series, plot_groups, ratio_reference  # noqa: F401
from iclbench.tables import COLUMNS, cell_text, ci_note, fmt, json_value, long_table, markdown, pivot, span  # noqa: F401

FORMATS = ("md", "csv", "json")
WRITER = "leaderboard"  # whose manifest a pruning render reads and writes (outputs.MANIFEST)


def summary(records: list[dict[str, Any]]) -> str:
    """The Markdown tables of one run's records, for the terminal: no plots, no provenance footer."""
    kept, _ = resolve_conflicts(records)
    return markdown(aggregate(to_frame(kept)))


def render(records: list[dict[str, Any]], out: str | Path, formats: tuple[str, ...] = FORMATS, plots: bool = True,
           intro: str = "", on_conflict: str = "prefer-most-tasks", prune: bool = False,
           axes: Mapping[tuple[str, str], str] | None = None,
           ratio_references: Mapping[str, str] | None = None) -> list[Path]:
    """Write the leaderboard files for `records` into `out`; returns the paths written.

    `intro` is a paragraph under the Markdown title. Records of the same measurement whose
    numbers differ are resolved by `on_conflict` (see `merge.resolve_conflicts`; "error" raises
    ConflictError), with one warning listing each conflict. Every file is written under a
    temporary name and all are renamed into place once all are written: a render that fails
    leaves the previous files as they were. `prune`: `out` belongs to this render, which records
    its files in `outputs.MANIFEST` and deletes the plots of the previous pruning render that it
    no longer writes (stale plots); files that no render listed there, a user's among them, stay.
    `axes` and `ratio_references`: what the suites' files say about their shift plots (x-axis
    label per (suite, group), the learner ratio panels divide by per suite; see
    `suite_labels.plot_labels` and `shift_plots`).
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
        images = plot_all(agg, kept, out, axes, ratio_references) if plots else []
        written = write_tables(agg, prov, out, formats, images, intro)
        if prune:
            outputs.write_manifest(out, WRITER, written)
    if prune:
        outputs.prune(out, previous, written)
    return written


def plot_all(agg: pd.DataFrame, records: list[dict[str, Any]], out: Path,
             axes: Mapping[tuple[str, str], str] | None = None,
             ratio_references: Mapping[str, str] | None = None) -> list[Path]:
    """Every plot of the leaderboard: the shift groups, then the curves against context length and position."""
    return plot_groups(agg, out, axes, ratio_references) + plot_prefix_curves(records, out) \
        + plot_position_curves(records, out) + plot_position_alignment(records, out)


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
