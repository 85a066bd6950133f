"""Figures of error against context length: per evaluation column that records it, each
learner's error relative to the zero predictor at every prefix k, with its 95 % band."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from iclbench.metrics import across_seeds
from iclbench.plotting import decorate, save, subplots

MARKERS = "os^Dv<>pP*Xh"
TOP = 1.5  # the axis stops at 1.5 x the zero predictor's error (as Garg et al.'s figures): worse is off the chart


def prefix_series(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[int, dict]]]:
    """(suite, column) -> learner label -> seed -> its stored prefix curve."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("prefix_curve") and r.get("status", "ok") == "ok":
            out[(r["suite"], r["task_label"])][r["label"]][r["seed"]] = r["prefix_curve"]
    return out


def draw_prefix_curves(ax, learners: dict[str, dict[int, dict]], title: str, size: int = 8) -> None:
    """Draw each learner's curve (label -> seed -> stored curve) on `ax`: the mean over seeds
    with its band (Student t over seeds; one seed: its band over tasks)."""
    for i, (label, seeds) in enumerate(sorted(learners.items())):
        curves = list(seeds.values())
        k = curves[0]["k"]
        stats = [across_seeds([c["error"][j] for c in curves], [c["ci95"][j] for c in curves]) for j in range(len(k))]
        mean = [m for m, _ in stats]
        ax.plot(k, mean, marker=MARKERS[i % len(MARKERS)], ms=3.5, lw=1.3, mfc="none",
                label=f"{label} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
        ax.fill_between(k, [m - c for m, c in stats], [m + c for m, c in stats], alpha=0.15)
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.set_ylim(0, TOP)
    decorate(ax, "in-context examples k", f"query error / zero predictor's error (axis cut at {TOP:g})", title, size=size)


def plot_prefix_curves(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """`<suite>-<column>-error-vs-context.png` per column with prefix curves."""
    paths = []
    for (suite, column), learners in sorted(prefix_series(records).items()):
        fig, ax = subplots(figsize=(6.4, 4.2))
        draw_prefix_curves(ax, learners, f"{suite}: {column}")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{suite}-{column}")
        paths.append(save(fig, out / f"{safe}-error-vs-context.png", dpi=110))
    return paths
