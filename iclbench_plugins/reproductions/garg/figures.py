"""Garg et al.'s central figure, drawn from a reproduction's records: the error against context
length of every learner, one panel per function class."""

from __future__ import annotations

import math
from pathlib import Path

from iclbench.plugin_api import display_records, draw_prefix_curves, prefix_series, Results, save, subplots


def function_class_figure(r: Results, folder: Path, columns: dict[str, str]) -> Path | None:
    """`function-classes-error-vs-context.png`: a panel per (suite, in-distribution column) in
    `columns` that has curves, learners named by their spec; None when none has."""
    series = prefix_series(display_records(r))
    panels = [(suite, col) for suite, col in columns.items() if (suite, col) in series]
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = subplots(rows, cols, figsize=(6.2 * cols, 4.2 * rows), squeeze=False)
    order = sorted({label for panel in panels for label in series[panel]})  # one colour per learner in every panel
    for ax, (suite, col) in zip(axes.flat, panels):
        draw_prefix_curves(ax, series[(suite, col)], f"{suite}: {col}", size=7, order=order)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return save(fig, folder / "function-classes-error-vs-context.png", dpi=100)
