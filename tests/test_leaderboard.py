"""Leaderboard: seed aggregation with Student t, row order by in-distribution loss, file formats."""

from __future__ import annotations

import csv
import json
import math

import pytest

from iclbench import leaderboard


def rec(label, seed, task, loss, ci=0.01, group=None, value=None, ind=False, **metrics):
    return {"suite": "s", "label": label, "task_label": task, "group": group, "value": value,
            "in_distribution": ind, "seed": seed, "align_to": "gd" if metrics else None,
            "metrics": {"loss": loss, "loss_ci95": ci, **metrics}}


RECORDS = [
    rec("gd", 0, "home", 1.0, ind=True), rec("gd", 1, "home", 3.0, ind=True),
    rec("least-squares", 0, "home", 0.5, ind=True), rec("least-squares", 1, "home", 0.5, ind=True),
    rec("zero", 0, "home", 4.0, ind=True), rec("zero", 1, "home", 6.0, ind=True),
    rec("gd", 0, "wide", 9.0, group="range", value=2.0), rec("gd", 1, "wide", 11.0, group="range", value=2.0),
    rec("zero", 0, "wide", 0.1, group="range", value=2.0), rec("zero", 1, "wide", 0.3, group="range", value=2.0),
]


def test_aggregate_over_seeds_uses_student_t():
    agg = leaderboard.aggregate(leaderboard.to_frame(RECORDS)).set_index(["learner", "task"])
    gd = agg.loc[("gd", "home")]
    assert gd["mean"] == 2.0 and gd["n_seeds"] == 2
    assert gd["ci95"] == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2))  # sd of (1, 3) is sqrt(2)
    assert agg.loc[("least-squares", "home"), "ci95"] == 0.0
    assert agg.loc[("zero", "wide"), "mean"] == pytest.approx(0.2)


def test_one_seed_keeps_the_task_ci():
    agg = leaderboard.aggregate(leaderboard.to_frame([rec("gd", 0, "home", 1.5, ci=0.25)]))
    assert (agg["mean"].item(), agg["ci95"].item(), agg["n_seeds"].item()) == (1.5, 0.25, 1)


def test_rows_are_sorted_by_in_distribution_loss():
    agg = leaderboard.aggregate(leaderboard.to_frame(RECORDS))
    # "zero" wins the shifted task but loses in distribution
    assert leaderboard.learner_order(agg) == ["least-squares", "gd", "zero"]


def test_markdown_tables():
    md = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(RECORDS)))
    assert "## Suite `s`" in md and "### in distribution" in md and "### range" in md
    assert "95 % CI over seeds (Student t)" in md and "2 seed(s)" in md
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("| ")]
    assert rows[:4] == [["learner", "home"], ["least-squares", "0.5 ± 0"], ["gd", "2 ± 13"], ["zero", "5 ± 13"]]
    assert rows[4:7] == [["learner", "wide"], ["gd", "10 ± 13"], ["zero", "0.2 ± 1.3"]]  # same row order


def test_alignment_tables_appear_when_measured():
    records = [rec("gd", 0, "home", 1.0, ind=True, pred_diff=0.0, pred_diff_ci95=0.0),
               rec("zero", 0, "home", 2.0, ind=True, pred_diff=0.75, pred_diff_ci95=0.01)]
    md = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(records)))
    assert "### pred_diff against `gd`" in md and "0.75 ± 0.01" in md
    assert "95 % CI over evaluation tasks" in md


def test_render_writes_every_format(tmp_path):
    paths = leaderboard.render(RECORDS, tmp_path, ("md", "csv", "json"), plots=True)
    names = sorted(p.name for p in paths)
    assert names == ["leaderboard.csv", "leaderboard.json", "leaderboard.md", "s-range.png"]
    assert (tmp_path / "leaderboard.md").read_text().startswith("# Leaderboard\n")
    rows = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    gd_home = next(r for r in rows if r["learner"] == "gd" and r["task"] == "home")
    assert float(gd_home["mean"]) == 2.0 and float(gd_home["ci95"]) == pytest.approx(12.706)
    data = json.loads((tmp_path / "leaderboard.json").read_text())
    assert {"suite", "group", "task", "learner", "metric", "reference", "mean", "ci95", "n_seeds"} == set(data[0])
    assert len(data) == 10 // 2  # five (learner, task) cells, one metric
    assert (tmp_path / "s-range.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        leaderboard.render(RECORDS, tmp_path, ("md", "html"))
    with pytest.raises(ValueError, match="no records"):
        leaderboard.render([], tmp_path)


def test_alignment_is_reported_per_reference():
    """Alignment against different references is never averaged together."""
    from iclbench import leaderboard

    def rec(ref, cos):
        return {"suite": "linear", "label": "lsa", "task_label": "linear", "seed": 0, "in_distribution": True,
                "align_to": ref, "metrics": {"loss": 0.2, "loss_ci95": 0.01, "sens_cos": cos, "sens_cos_ci95": 0.0}}

    text = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame([rec("gd", 0.9), rec("gd++", 0.5)])))
    assert "sens_cos against `gd`" in text and "sens_cos against `gd++`" in text
    assert "0.9 ± 0" in text and "0.5 ± 0" in text and "0.7" not in text


def test_shift_plots_name_exact_learners_instead_of_drawing_them(tmp_path, monkeypatch):
    """A learner at float-rounding loss would stretch the log axis over ten decades."""
    figures = []
    monkeypatch.setattr(leaderboard, "save", lambda fig, path, **kw: figures.append(fig))
    records = [rec(name, 0, f"r={v}", loss, group="range", value=v)
               for name, loss in (("gd", 0.2), ("least-squares", 3e-10)) for v in (1.0, 2.0)]
    leaderboard.plot_groups(leaderboard.aggregate(leaderboard.to_frame(records)), tmp_path)
    (ax,) = figures[0].axes
    assert ax.get_legend_handles_labels()[1] == ["gd"]
    assert [t.get_text() for t in ax.texts] == ["not drawn, loss < 1e-06 throughout: least-squares"]
