"""Publish a reproduction folder: tables, plots and README.md, all from the stored records.

`publish(folder, reproduction)` is deterministic in the records: running it twice writes the
same tables byte for byte, which is how a test checks that nothing was edited by hand. Its
files are written together or not at all, and it deletes only plots its own earlier publication
listed in the folder's manifest (`outputs`); names and text from the records are made safe file
names (`filenames`) and escaped in the Markdown (`escaping`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from iclbench import board as leaderboard
from iclbench import outputs, report_text
from iclbench.escaping import md_cell, md_code, md_text
from iclbench.curve_spec import AnalysisLine, CurveFigures, CurvePlot
from iclbench.filenames import safe_path
from iclbench.merge import status
from iclbench.reproduce import Reproduction, Results
from iclbench.plotting import decorate, save, styles, subplots




WRITER = "publish"  # whose manifest `publish` reads and writes (outputs.MANIFEST)
INTRO = ("Learners are named as in the reproduction's spec; the training settings each one ran "
         "under are listed in [README.md](README.md).")


def publish(folder: Path, repro: Reproduction) -> list[Path]:
    """Write leaderboard.{md,csv,json}, the plots and README.md into `folder`, all renamed into
    place once all are written (a failure leaves the previous publication whole), and list them
    in the folder's manifest; then delete the plots the previous publication's manifest lists
    that this one did not write (stale plots). Nothing else is deleted: not a file no
    publication wrote, nor the analyses' figures under figures/, nor anything in a folder
    without a manifest."""
    from iclbench.catalog import default_catalog
    from iclbench.suite_labels import plot_labels

    folder = Path(folder)
    results = Results(folder)
    shown = display_records(results)
    previous = outputs.owned(folder, WRITER)
    with outputs.staged():
        written = leaderboard.render(shown, folder, intro=INTRO,
                                     **plot_labels(default_catalog(), {r["suite"] for r in shown}))
        written += plot_curves(shown, folder, display_analyses(results), repro.spec().curves)
        written += repro.figures(results, folder)
        readme = render_readme(results, repro, shown, [p for p in written if p.suffix == ".png"])
        written.append(outputs.write_text(folder / "README.md", readme))
        outputs.write_manifest(folder, WRITER, written)
    outputs.prune(folder, previous, written)
    return written


def display_records(results: Results) -> list[dict[str, Any]]:
    """The records with each learner named by its spec (`mlp-gd`) rather than its label, which
    carries the budget's training settings (`mlp-gd[train.steps=20000,...]`)."""
    names = {label: spec for spec, label in results.meta["labels"].items()}
    return [{**r, "label": names.get(r["label"], r["label"]), "align_to": names.get(r.get("align_to"), r.get("align_to"))}
            for r in results.records]


def display_analyses(results: Results) -> list[dict[str, Any]]:
    """The analyses' records with each result's `learner` named by its spec, as the learners are."""
    names = {label: spec for spec, label in results.meta["labels"].items()}
    return [{**a, "result": {**a["result"], "learner": names.get(a["result"]["learner"], a["result"]["learner"])}}
            if "learner" in a["result"] else a for a in results.analyses]


def curves_by_learner(records: list[dict[str, Any]], column: str) -> dict[str, dict[str, list[list[dict]]]]:
    """suite -> learner -> one training curve per seed (in seed order), for learners whose curve has `column`."""
    out: dict[str, dict[str, dict[int, list]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        curve = (r.get("fit_info") or {}).get("curve") or []
        if curve and column in curve[-1]:
            out[r["suite"]][r["label"]][r["seed"]] = curve
    return {s: {lab: [seeds[k] for k in sorted(seeds)] for lab, seeds in d.items()} for s, d in out.items()}


def trace(curve: list[dict], column: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one seed's curve."""
    rows = [row for row in curve if column in row]
    return [row["step"] for row in rows], [float(row[column]) for row in rows]


def mean_trace(curves: list[list[dict]], column: str) -> tuple[list[int], list[float]]:
    """The mean over seeds at the steps every seed reached (a partial seed shortens it, never skews it)."""
    by_seed = [dict(zip(*trace(c, column))) for c in curves]
    steps = sorted(set.intersection(*(set(d) for d in by_seed)))
    return steps, [sum(d[s] for d in by_seed) / len(by_seed) for s in steps]


def evaluation_loss(records: list[dict[str, Any]], suite: str, learner: str) -> float | None:
    """`learner`'s in-distribution loss on `suite`, the mean over seeds (each seed once, whatever
    its reference); None if it has no finished record there."""
    by_seed: dict[int, float] = {}
    for r in sorted(records, key=lambda r: (r["seed"], str(r.get("align_to")))):
        loss = (r.get("metrics") or {}).get("loss")
        if (r["suite"], r["label"]) == (suite, learner) and r.get("in_distribution") and status(r) == "ok" \
                and loss is not None and math.isfinite(loss):
            by_seed.setdefault(r["seed"], float(loss))
    return sum(by_seed.values()) / len(by_seed) if by_seed else None


def analysis_losses(analyses: Sequence[dict[str, Any]], line: AnalysisLine) -> dict[tuple[str, str], float]:
    """(suite, learner) -> the mean over seeds of `result[line.key]` of the analysis `line` names."""
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a in analyses:
        if a["analysis"] == line.analysis and line.key in a["result"]:
            found[(a["suite"], a["result"]["learner"])].append(float(a["result"][line.key]))
    return {k: sum(v) / len(v) for k, v in found.items()}


def reference_lines(records: list[dict[str, Any]], analyses: Sequence[dict[str, Any]], suite: str,
                    learner: str, curves: CurveFigures) -> list[tuple[str, float]]:
    """(name, loss) of the horizontal lines drawn across `learner`'s training curve on `suite`, as
    the reproduction declares them (`curves`): its compared learners and the baseline when the
    suite scored them, and the analysis lines when their analysis ran on this learner and suite."""
    lines = [(ref, evaluation_loss(records, suite, ref)) for ref in curves.references.get(learner, ())]
    lines += [(line.name, analysis_losses(analyses, line).get((suite, learner))) for line in curves.analysis_lines]
    if curves.baseline is not None:
        lines.append((curves.baseline_line, evaluation_loss(records, suite, curves.baseline)))
    return [(name, loss) for name, loss in lines if loss is not None]


def plot_curves(records: list[dict[str, Any]], folder: Path, analyses: Sequence[dict[str, Any]] = (),
                curves: CurveFigures | None = None) -> list[Path]:
    """`<suite>-<stem>.png` per declared curve column (`curves.plots`) and suite: small multiples,
    one panel per trained learner on its own steps, thin lines per seed (a seed stuck on the
    baseline's plateau shows) and their mean; the training-curve panels carry their reference losses."""
    curves = curves or CurveFigures()
    paths = []
    for column, plot in curves.plots.items():
        for suite, learners in sorted(curves_by_learner(records, column).items()):
            lines = {lab: reference_lines(records, analyses, suite, lab, curves) if plot.references else []
                     for lab in learners}
            fig = curve_figure(suite, learners, column, plot, lines, curves.baseline_line)
            path = safe_path(folder, f"{suite}-{plot.stem}", ".png")
            save(fig, path, dpi=110)
            paths.append(path)
    return paths


def curve_figure(suite: str, learners: dict[str, list[list[dict]]], column: str, plot: CurvePlot,
                 lines: dict[str, list[tuple[str, float]]], baseline_line: str | None = None):
    """The small multiples of one suite's curves; `lines`: per learner, the (name, loss) drawn
    across, the baseline's (`baseline_line`) dotted and left out where it would squeeze the curves."""
    names = sorted(learners)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = subplots(rows, cols, figsize=(4.3 * cols, 3.3 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    others = sorted({name for label in names for name, _ in lines[label] if name != baseline_line})
    look = styles(names + others)  # the trained learners and the compared ones, one look each
    for ax, label in zip(axes.flat, names):
        curves = learners[label]
        color = look[label]["color"]
        for col, name, dashed in ((column, plot.label, False), (plot.second, plot.second_label, True)):
            if col is None:
                continue
            ls = "--" if dashed else "-"
            for c in curves:
                ax.plot(*trace(c, col), color=color, lw=0.7, alpha=0.45, ls=ls)
            mean = f"mean of {len(curves)} seed{'s' if len(curves) > 1 else ''}"
            ax.plot(*mean_trace(curves, col), color=color, lw=1.8, ls=ls,
                    label=f"{name or col}, {mean}" if plot.second else mean)
        highest = max(max(trace(c, column)[1], default=0.0) for c in curves)
        for name, value in lines[label]:
            if name == baseline_line and value > 2 * highest:
                continue  # far above every curve: it would only squeeze them
            color, ls = ("0.45", ":") if name == baseline_line else (look[name]["color"], look[name]["ls"])
            ax.axhline(value, color=color, ls=ls, lw=1.1, label=f"{name}: {value:.4g}")
        decorate(ax, "training step", plot.ylabel, label, log=plot.log, size=7)
        if plot.top is not None:
            ax.set_ylim(min(0.0, ax.get_ylim()[0]), plot.top)
    what = "thin: each seed; thick: their mean" + ("; lines: evaluation loss of the compared learners" if plot.references else "")
    fig.suptitle(f"{suite}: {plot.stem.replace('-', ' ')}\n({what})", fontsize=9)
    return fig


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
        if "train_seconds" in info:  # a meta-trained learner: one training per (label, seed), shared by suites
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
        rows.append(f"| {md_text(label)} | {t.fit:.1f} | {t.evaluation:.1f} | {t.steps or ''} | {per_step} |")
    return rows


def analysis_time_rows(analyses: list[dict[str, Any]]) -> list[str]:
    """A table of seconds per analysis (all seeds, its learners' fits included), slowest first;
    none for analyses stored without their time."""
    times: dict[str, float] = defaultdict(float)
    for a in analyses:
        if a.get("seconds") is not None:
            learner = a["config"].get("learner")
            times[a["analysis"] + (f" of {learner}" if learner else "")] += a["seconds"]
    if not times:
        return []
    rows = ["", "| analysis | seconds |", "|---|---|"]
    return rows + [f"| {md_text(name)} | {s:.1f} |" for name, s in sorted(times.items(), key=lambda kv: -kv[1])]


def budget_line(b: dict[str, Any]) -> str:
    own = "".join(f"; `{spec}`: " + ", ".join(f"{k} {v}" for k, v in cfg.items()) for spec, cfg in b.get("train", {}).items())
    return (f"{b['train_steps']} training steps per trained learner{own}; "
            f"{b['n_tasks']} evaluation tasks per task and seed")


def execution_flags(m: dict[str, Any]) -> str:
    ex = m.get("execution", {})
    return ((f" --jobs {ex['jobs']}" if ex.get("jobs", 1) > 1 else "") + (" --compile" if ex.get("compile") else "")
            + (f" --executor {ex['executor']}" if ex.get("executor") else "")
            + stack_flag(ex.get("stack_seeds")))


def stack_flag(mode) -> str:
    """--stack-seeds as run: exact (the default, also stored as True by earlier runs) or close."""
    return "" if not mode else " --stack-seeds" if mode in (True, "exact") else f" --stack-seeds {mode}"


PHASES = {"training", "evaluation", "analyses"}  # a reproduction call's phases, in the order they run


def wall_line(m: dict[str, Any]) -> str:
    """The reproduction's wall time: over every resumed call, and the last call's phases."""
    if m["wall_seconds"] is None:
        return "unfinished (partial results)"
    calls = list(m.get("earlier_calls_seconds", [])) + [m["wall_seconds"]]
    line = (f"{calls[0]:.0f} s" if len(calls) == 1 else f"{sum(calls):.0f} s over {len(calls)} resumed `reproduce` "
            "calls (" + " + ".join(f"{c:.0f}" for c in calls) + " s)")
    phases = m.get("phase_seconds")
    if phases:
        where = "" if len(calls) == 1 else " in the last call"
        order = [p for p in ("training", "evaluation", "analyses") if p in phases] + sorted(set(phases) - PHASES)
        line += f"; {', '.join(f'{name} {phases[name]:.0f} s' for name in order)}{where}"
    return line


def deviation_rows(repro: Reproduction) -> list[str]:
    """The spec's table of where the defaults differ from the paper's text or reference code."""
    devs = report_text.deviation_rows(repro.spec().deviations)
    if not devs:
        return []
    return ["", f"## {report_text.DEVIATIONS_TITLE}", "", md_row(report_text.DEVIATIONS_HEAD), md_rule(4)] + [
        md_row(map(md_cell, row)) for row in devs]


def md_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def md_rule(n: int) -> str:
    return "|" + "---|" * n


def render_readme(results: Results, repro: Reproduction, shown: list[dict[str, Any]], plots: list[Path]) -> str:
    """README.md of the publication; `plots` are the top-level PNGs this publication wrote."""
    m = results.meta
    findings = repro.findings(results)
    command = (f"iclbench reproduce {m['reproduction']} --budget {m['budget']} --seeds "
               f"{','.join(map(str, m['seeds']))}{execution_flags(m)}")
    lines = [  # reproduction.json's values escaped (`md_code`, `md_text`): a crafted folder holds no markup
        f"# Reproduction {md_code(m['reproduction'])} ({md_text(m['budget'])} budget)",
        "",
        repro.spec().description,
        "",
        f"Generated by {md_code(command)}; every file here is written by that command from "
        "`results.jsonl` and `analyses.jsonl`.",
        "",
        f"- commit: {md_code(m['git_commit'])}",
        f"- device: {md_code(m['device'])}; versions: "
        + md_text(", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))),
        f"- budget: {md_cell(budget_line(m['budget_values']))}; seeds {md_text(m['seeds'])}",
        "- wall time: " + wall_line(m),
        "",
        "## Findings",
        "",
        f"{report_text.PAIRED_NOTE} {report_text.VERDICT_NOTE}",
        "",
        md_row(report_text.FINDINGS_HEAD),
        md_rule(len(report_text.FINDINGS_HEAD)),
    ]
    for i, claim, ours, holds, why in report_text.finding_rows(findings):
        verdict = {True: "yes", False: "**no**", None: "*inconclusive*"}[holds]
        lines.append(md_row([str(i), md_cell(claim), md_cell(ours), verdict, md_cell(why)]))
    lines += deviation_rows(repro)
    lines += ["", "## Time per learner", "", "All seeds; a training counts once however many suites score it. Trainings run "
              "in parallel with `--jobs`, so these add up to more than the wall time. Evaluation counts one prediction of "
              "each column's tasks; the error against context length, for learners asked once per prefix, costs up "
              "to N times more and is not included.", ""]
    lines += time_rows(wall_times(shown))
    lines += analysis_time_rows(results.analyses)
    figures = sorted(p.name for p in plots) + sorted(
        f"figures/{p.name}" for p in (results.folder / "figures").glob("*.png"))
    lines += ["", "## Tables and figures", "", "- [leaderboard.md](leaderboard.md) (also `.csv`, `.json`)"]
    lines += [f"- [{md_text(name)}]({quote(name)})" for name in figures]
    return "\n".join(lines) + "\n"
