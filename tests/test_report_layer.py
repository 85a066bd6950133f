"""The report layer reads one metric registry and takes paper knowledge from the suite files:
the registry's direction ranks the site's and the Markdown's rows, its labels head the site's
columns, its formats write the cells; a suite file's [axes] label its shift plots' x-axes and
its ratio_reference picks the learner their ratio panels divide by, and without one (and
without one reference in the records) there is no ratio panel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from iclbench import api, board, metric_registry, shift_plots
from iclbench.metric_registry import REGISTRY, metric, row_rank
from iclbench.site_tables import Column, scores_table
from iclbench.suite import SuiteRegistry
from iclbench.suite_labels import plot_labels, suite_axes, suite_ratio_references
from helpers import board_record

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = [ROOT / "leaderboard", ROOT / "leaderboard" / "garg", ROOT / "leaderboard" / "mesa"]
INPUT_RANGE = "input range α: x ~ U(−α/2, α/2)^d  (α = 1: the training range)"


def rec(label, task, loss, *, suite="s", group=None, value=None, ref=None, ind=False, **metrics):
    return board_record(label, task, loss, suite=suite, group=group, value=value, ref=ref, ind=ind, **metrics)


def captured(monkeypatch) -> list:
    """The shift plots' figures, kept open instead of written."""
    figures = []
    monkeypatch.setattr(shift_plots, "save", lambda fig, path, **kw: figures.append(fig))
    return figures


def reversed_direction(monkeypatch, name: str) -> None:
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(REGISTRY[name], lower_is_better=False))


# --- one metric registry -------------------------------------------------------------------------

def test_the_registrys_direction_ranks_the_sites_and_the_markdowns_rows(monkeypatch):
    rows = [{"learner": name, "metric": "loss", "reference": "", "status": "ok", "mean": loss}
            for name, loss in (("a", 1.0), ("b", 2.0), ("c", 3.0))]
    column = Column("", "home", {(r["learner"], "loss", ""): r for r in rows})
    records = [rec(name, "home", loss, ind=True) for name, loss in (("a", 1.0), ("b", 2.0), ("c", 3.0))]
    agg = board.aggregate(board.to_frame(records))
    assert column.learners() == board.learner_order(agg) == ["a", "b", "c"]  # loss: lower is better
    reversed_direction(monkeypatch, "loss")
    assert column.learners() == board.learner_order(agg) == ["c", "b", "a"]
    md = board.markdown(agg)
    assert [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][1:] == ["c", "b", "a"]


def test_the_sites_headers_are_the_registrys_labels(monkeypatch):
    cells = {("a", m, ""): {"learner": "a", "metric": m, "reference": "", "status": "ok", "mean": 1.0, "ci95": None,
                            "nonfinite": "", "seeds": 1, "failed_seeds": 0, "tasks": 100}
             for m in ("loss", "loss_median", "brand_new")}
    html = scores_table(Column("", "home", cells))
    assert ">loss<" in html and ">median loss<" in html and ">brand_new<" in html  # unknown: by its name
    monkeypatch.setitem(REGISTRY, "loss_median", dataclasses.replace(REGISTRY["loss_median"], label="the median"))
    assert ">the median<" in scores_table(Column("", "home", cells))


def test_the_registrys_number_format_writes_the_cells(monkeypatch):
    agg = board.aggregate(board.to_frame([rec("a", "home", 0.123456, ind=True)]))
    assert "0.1235 ± 0.01" in board.markdown(agg)
    monkeypatch.setitem(REGISTRY, "loss", dataclasses.replace(REGISTRY["loss"], mean_format=".2f", ci_format=".3f"))
    assert "0.12 ± 0.010" in board.markdown(agg)


@pytest.mark.parametrize("folder", PUBLISHED, ids=["paper", "garg", "mesa"])
def test_the_published_metrics_are_registered_and_keyed_as_the_registry_says(folder):
    rows = json.loads((folder / "leaderboard.json").read_text())["rows"]
    names = {r["metric"] for r in rows}
    assert names <= set(REGISTRY), names - set(REGISTRY)
    for r in rows:
        assert bool(r["reference"]) == metric(r["metric"]).referenced, r
    by_cell: dict[tuple, list[str]] = {}
    for r in rows:
        by_cell.setdefault((r["suite"], r["group"], r["task"], r["learner"]), []).append(r["metric"])
    for metrics in by_cell.values():  # a cell's rows in the registry's order (rows per reference: repeated)
        distinct = list(dict.fromkeys(metrics))
        assert distinct == sorted(distinct, key=lambda m: (row_rank(m), m))
        assert distinct[0] == metric_registry.RANK_BY or "loss" not in distinct


def test_a_ci_companion_pairs_with_its_metric():
    assert metric("sens_cos").ci == "sens_cos_ci95" and metric_registry.is_ci("sens_cos_ci95")
    assert list(metric_registry.own_metrics({"loss": 1.0, "loss_ci95": 0.1, "pred_diff": 2.0})) == ["loss", "pred_diff"]
    assert metric("accuracy").lower_is_better is False and metric("loss_diff").of == "loss"


# --- shift-plot labels from the suite files ------------------------------------------------------

def suite_file(folder: Path, name: str, extra: str = "", include: str | None = None) -> Path:
    path = folder / f"{name}.toml"
    head = f'name = "{name}"\n' + (f'include = "{include}"\n' if include else "")
    body = "" if include else '[train]\ntask = "linear-regression"\n'
    path.write_text(head + extra + body + '[[eval]]\nlabel = "w=2"\ntask = "linear-regression"\ngroup = "width"\nvalue = 2\n')
    return path


def test_a_suite_files_axis_label_is_its_shift_plots_x_axis(tmp_path, monkeypatch):
    registry = SuiteRegistry()
    registry.add_path(suite_file(tmp_path, "wide", '[axes]\n"width" = "width w: how wide the inputs are"\n'), "test")
    labels = plot_labels(registry, ["wide", "unregistered"])
    assert labels == {"axes": {("wide", "width"): "width w: how wide the inputs are"}, "ratio_references": {}}
    figures = captured(monkeypatch)
    records = [rec(name, f"w={v}", loss * v, suite=suite, group="width", value=v)
               for suite in ("wide", "unregistered") for name, loss in (("gd", 0.2), ("zero", 0.4)) for v in (1, 2)]
    shift_plots.plot_groups(board.aggregate(board.to_frame(records)), tmp_path, **labels)
    unregistered, wide = figures
    assert [ax.get_xlabel() for ax in wide.axes] == ["width w: how wide the inputs are"]
    assert [ax.get_xlabel() for ax in unregistered.axes] == ["width"]  # no file, no label: the group's name


def test_without_a_ratio_reference_or_one_reference_there_is_no_ratio_panel(tmp_path, monkeypatch):
    registry = SuiteRegistry()
    registry.add_path(suite_file(tmp_path, "plain"), "test")
    registry.add_path(suite_file(tmp_path, "divided", 'ratio_reference = "gd"\n'), "test")
    assert suite_ratio_references(registry, ["plain", "divided"]) == {"divided": "gd"}
    figures = captured(monkeypatch)
    records = [rec(name, f"w={v}", loss * v, suite=suite, group="width", value=v)  # no align_to
               for suite in ("divided", "plain") for name, loss in (("gd", 0.2), ("zero", 0.4)) for v in (1, 2)]
    agg = board.aggregate(board.to_frame(records))
    shift_plots.plot_groups(agg, tmp_path, **plot_labels(registry, ["plain", "divided"]))
    divided, plain = figures
    assert len(plain.axes) == 1 and shift_plots.ratio_reference(agg, "plain") is None
    assert len(divided.axes) == 2 and divided.axes[1].get_ylabel() == "loss / gd's loss (line: gd)"
    assert shift_plots.ratio_reference(agg, "divided", "absent-learner") is None  # declared but never scored


def test_the_records_one_reference_comes_before_the_declared_one():
    records = [rec(name, f"w={v}", 0.2, group="width", value=v, ref="zero", loss_diff=0.0)
               for name in ("gd", "zero") for v in (1, 2)]
    assert shift_plots.ratio_reference(board.aggregate(board.to_frame(records)), "s", "gd") == "zero"
    several = records + [rec("gd", f"w={v}", 0.2, group="width", value=v, ref="lsa", loss_diff=0.0) for v in (1, 2)]
    agg = board.aggregate(board.to_frame(several))
    assert shift_plots.ratio_reference(agg, "s", "gd") == "gd" and shift_plots.ratio_reference(agg, "s") is None


def test_a_suite_inherits_the_labels_of_the_suite_it_includes(tmp_path):
    registry = SuiteRegistry()
    registry.add_path(suite_file(tmp_path, "base", 'ratio_reference = "gd"\n[axes]\n"width" = "base width"\n'
                                 '"depth" = "base depth"\n'), "test")
    registry.add_path(suite_file(tmp_path, "child", '[axes]\n"width" = "child width"\n', include="base"), "test")
    assert suite_axes(registry, ["child"]) == {("child", "depth"): "base depth", ("child", "width"): "child width"}
    assert suite_ratio_references(registry, ["child"]) == {"child": "gd"}


def test_the_leaderboard_command_labels_linear_ood_from_its_suite_file(tmp_path, monkeypatch):
    """`iclbench leaderboard`'s render passes the installed suites' labels: linear-ood's input range
    axis and its ratio panel against gd, though the records name two references."""
    figures = captured(monkeypatch)
    records = [rec(name, f"input-range={v}", loss * v, suite="linear-ood", group="input range", value=v, ref=ref,
                   loss_diff=0.0, loss_diff_ci95=0.0)
               for ref in ("gd", "gd++[steps=2]") for name, loss in (("gd", 0.2), ("lsa", 0.3)) for v in (1.0, 2.0)]
    api.render_leaderboard(records, tmp_path / "board", ["md"])
    (figure,) = figures
    assert [ax.get_xlabel() for ax in figure.axes] == ["", INPUT_RANGE]
    assert figure.axes[1].get_ylabel() == "loss / gd's loss (line: gd)"


def test_the_core_holds_no_shift_groups_axis_convention():
    """The paper's axis labels live in the suite files, not in a module of the core."""
    for path in (ROOT / "iclbench").glob("*.py"):
        text = path.read_text()
        assert "GROUP_AXES" not in text and "U(−α/2, α/2)" not in text, path.name
    assert ("linear-ood", "input range") in suite_axes(api.catalog(), ["linear-ood"])


def test_the_report_layers_modules_stay_under_400_lines():
    for name in ("board", "cells", "tables", "shift_plots", "metric_registry", "suite_labels", "site", "site_html",
                 "site_tables", "plotting", "prefix_plot", "escaping", "provenance"):
        assert len((ROOT / "iclbench" / f"{name}.py").read_text().splitlines()) < 400, name


def test_the_board_and_the_site_word_a_ci_alike():
    """Both renderers take the ± note from report_text: seeds, tasks, or a mix of the two."""
    import pandas as pd

    from iclbench import report_text, site_tables, tables

    cells = pd.DataFrame({"status": ["ok", "ok", "failed"], "seeds": [3, 1, 5]})
    assert tables.ci_note(cells) == report_text.CI_MIXED
    assert tables.ci_note(cells.iloc[[0, 2]]) == report_text.CI_OVER_SEEDS
    page = [site_tables.Column("g", "t", cells={("a", "loss", None): {"ci_over": "tasks"}})]
    assert site_tables.ci_note(page) == report_text.CI_OVER_TASKS == tables.ci_note(cells.iloc[[1]])
