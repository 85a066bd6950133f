"""Publish a reproduction folder: tables, plots and README.md, all from the stored records.

`publish(folder, reproduction)` is deterministic in the records: running it twice writes the
same tables byte for byte, which is how a test checks that nothing was edited by hand.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iclbench import leaderboard
from iclbench.reproduce import Reproduction, Results
from iclbench.plotting import decorate, prune_stale, save, subplots

CURVE_PLOTS = {  # curve column -> (file stem, y label, log scale)
    "eval_loss": ("training-curves", "held-out loss", True),
    "sens_cos_gd1": ("alignment-over-training", "cosine of sensitivities with one GD step", False),
    "copy_next": ("copy-dependence", "norm of d(layer-1 out at x_j) / d e_{j+1}", True),
}


INTRO = ("Learners are named as in the reproduction's spec; the training settings each one ran "
         "under are listed in [README.md](README.md).")


def publish(folder: Path, repro: Reproduction) -> list[Path]:
    """Write leaderboard.{md,csv,json}, the plots and README.md into `folder`, then delete the
    top-level PNGs this call did not write (stale plots of an earlier publication); the
    analyses' figures under figures/ are not touched."""
    results = Results(folder)
    shown = display_records(results)
    written = leaderboard.render(shown, folder, intro=INTRO)
    written += plot_curves(shown, folder)
    readme = folder / "README.md"
    readme.write_text(render_readme(results, repro, shown, [p for p in written if p.suffix == ".png"]))
    written.append(readme)
    prune_stale(folder, written)
    return written


def display_records(results: Results) -> list[dict[str, Any]]:
    """The records with each learner named by its spec (`mlp-gd`) rather than its label, which
    carries the budget's training settings (`mlp-gd[train.steps=20000,...]`)."""
    names = {label: spec for spec, label in results.meta["labels"].items()}
    return [{**r, "label": names.get(r["label"], r["label"]), "align_to": names.get(r.get("align_to"), r.get("align_to"))}
            for r in results.records]


def curves_by_learner(records: list[dict[str, Any]], column: str) -> dict[str, dict[str, list[list[dict]]]]:
    """suite -> learner -> one training curve per seed, for learners whose curve has `column`."""
    out: dict[str, dict[str, dict[int, list]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        curve = (r.get("fit_info") or {}).get("curve") or []
        if curve and column in curve[-1]:
            out[r["suite"]][r["label"]][r["seed"]] = curve
    return {s: {lab: list(seeds.values()) for lab, seeds in d.items()} for s, d in out.items()}


def plot_curves(records: list[dict[str, Any]], folder: Path) -> list[Path]:
    paths = []
    for column, (stem, ylabel, log) in CURVE_PLOTS.items():
        for suite, learners in sorted(curves_by_learner(records, column).items()):
            fig, ax = subplots(figsize=(5.5, 3.8))
            for label, curves in sorted(learners.items()):
                steps = [row["step"] for row in curves[0]]
                mean = [sum(c[i][column] for c in curves) / len(curves) for i in range(len(steps))]
                ax.plot(steps, mean, label=f"{label} ({len(curves)} seeds)")
                if column == "copy_next":
                    other = [sum(c[i]["copy_other"] for c in curves) / len(curves) for i in range(len(steps))]
                    ax.plot(steps, other, ls="--", label=f"{label}: d / d e_other")
            decorate(ax, "training step", ylabel, f"{suite}: {stem.replace('-', ' ')}", log=log, size=7)
            path = folder / f"{suite}-{stem}.png"
            save(fig, path, dpi=120)
            paths.append(path)
    return paths


@dataclass
class LearnerTime:
    """Where a learner's time went over all seeds: fitting (each training once, however many
    suites score it), evaluation, and for meta-trained learners the steps behind the fit."""

    fit: float = 0.0
    evaluation: float = 0.0
    steps: int = 0

    @property
    def total(self) -> float:
        return self.fit + self.evaluation


def wall_times(records: list[dict[str, Any]]) -> dict[str, LearnerTime]:
    """Time per learner label, slowest first."""
    fits: dict[tuple, tuple[float, int]] = {}
    times: dict[str, LearnerTime] = defaultdict(LearnerTime)
    for r in records:
        info = r.get("fit_info") or {}
        if info:  # a meta-trained learner: one training per (label, seed), shared by suites
            steps = info["curve"][-1]["step"] if info.get("curve") else 0
            fits[(r["label"], r["seed"])] = (info.get("train_seconds", 0.0), steps)
        else:
            fits[(r["label"], r["seed"], r["suite"], r.get("align_to"))] = (r.get("fit_seconds", 0.0), 0)
        times[r["label"]].evaluation += r.get("seconds", 0.0)
    for key, (seconds, steps) in fits.items():
        times[key[0]].fit += seconds
        times[key[0]].steps += steps
    return dict(sorted(times.items(), key=lambda kv: -kv[1].total))


def time_rows(times: dict[str, LearnerTime]) -> list[str]:
    rows = ["| learner | fit s | evaluation s | training steps | ms per step |", "|---|---|---|---|---|"]
    for label, t in times.items():
        per_step = f"{1e3 * t.fit / t.steps:.1f}" if t.steps else ""
        rows.append(f"| {label} | {t.fit:.1f} | {t.evaluation:.1f} | {t.steps or ''} | {per_step} |")
    return rows


def budget_line(b: dict[str, Any]) -> str:
    own = "".join(f"; `{spec}`: " + ", ".join(f"{k} {v}" for k, v in cfg.items()) for spec, cfg in b.get("train", {}).items())
    return (f"{b['train_steps']} training steps per trained learner{own}; "
            f"{b['n_tasks']} evaluation tasks per task and seed")


def execution_flags(m: dict[str, Any]) -> str:
    ex = m.get("execution", {})
    return (f" --jobs {ex['jobs']}" if ex.get("jobs", 1) > 1 else "") + (" --compile" if ex.get("compile") else "")


def wall_line(m: dict[str, Any]) -> str:
    if m["wall_seconds"] is None:
        return "unfinished (partial results)"
    calls = list(m.get("earlier_calls_seconds", [])) + [m["wall_seconds"]]
    if len(calls) == 1:
        return f"{calls[0]:.0f} s"
    return f"{sum(calls):.0f} s over {len(calls)} resumed `reproduce` calls (" + " + ".join(f"{c:.0f}" for c in calls) + " s)"


def render_readme(results: Results, repro: Reproduction, shown: list[dict[str, Any]], plots: list[Path]) -> str:
    """README.md of the publication; `plots` are the top-level PNGs this publication wrote."""
    m = results.meta
    findings = repro.findings(results)
    lines = [
        f"# Reproduction `{m['reproduction']}` ({m['budget']} budget)",
        "",
        repro.spec().description,
        "",
        f"Generated by `iclbench reproduce {m['reproduction']} --budget {m['budget']} --seeds "
        f"{','.join(map(str, m['seeds']))}{execution_flags(m)}`; every file here is written by that command from "
        "`results.jsonl` and `analyses.jsonl`.",
        "",
        f"- commit: `{m['git_commit']}`",
        f"- device: `{m['device']}`; versions: " + ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items())),
        f"- budget: {budget_line(m['budget_values'])}; seeds {m['seeds']}",
        "- wall time: " + wall_line(m),
        "",
        "## Findings",
        "",
        "| # | claim | ours (mean over seeds) | holds |",
        "|---|---|---|---|",
    ]
    for i, f in enumerate(findings, 1):
        lines.append(f"| {i} | {f.claim} | {f.ours} | {'yes' if f.holds else '**no**'} |")
    lines += ["", "## Time per learner", "", "All seeds; a training counts once however many suites score it. Trainings run "
              "in parallel with `--jobs`, so these add up to more than the wall time.", ""]
    lines += time_rows(wall_times(shown))
    figures = sorted(p.name for p in plots) + sorted(
        f"figures/{p.name}" for p in (results.folder / "figures").glob("*.png"))
    lines += ["", "## Tables and figures", "", "- [leaderboard.md](leaderboard.md) (also `.csv`, `.json`)"]
    lines += [f"- [{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"
