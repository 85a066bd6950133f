"""Published figures: training curves as small multiples with their reference losses, shift plots
with a ratio panel and the paper's axis conventions, and the data each one is drawn from."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import board_record
from iclbench import board as leaderboard, publish, shift_plots
from iclbench.reproduce import Results
from iclbench.suite_labels import plot_labels

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "leaderboard"


def captured(monkeypatch, module) -> list:
    """The figures `module` saves, kept open instead of written."""
    figures = []
    monkeypatch.setattr(module, "save", lambda fig, path, **kw: figures.append(fig))
    return figures


# --- training curves -----------------------------------------------------------------------------

def curve(steps, start, end, stuck=False):
    """A held-out curve falling geometrically from `start` to `end` (or staying at `start`)."""
    n = len(steps)
    return [{"step": s, "eval_loss": start if stuck else start * (end / start) ** (i / (n - 1))} for i, s in enumerate(steps)]


def trained(label, seed, steps, end, stuck=False):
    return {**scored(label, seed, end), "fit_info": {"curve": curve(steps, 0.4, end, stuck)}}


def scored(label, seed, loss):
    return board_record(label, "s", loss, seed=seed, ind=True)


CURVES = [
    trained("lsa", 0, range(100, 1100, 100), 0.2), trained("lsa", 1, range(100, 1100, 100), 0.2, stuck=True),
    trained("lsa[layers=5,clip=10]", 0, range(1000, 21000, 1000), 0.02),
    scored("gd", 0, 0.21), scored("gd", 1, 0.19), scored("gd[steps=5]", 0, 0.1), scored("zero", 0, 0.4),
    scored("zero", 1, 0.4), {**scored("gd", 1, 99.0), "task_label": "shifted", "in_distribution": False},
]


def paper_curves():
    """The paper reproduction's declared training-curve figures (its spec's [curves] table)."""
    from iclbench.catalog import default_catalog

    return default_catalog().reproductions["paper"]().spec().curves


def test_training_curves_are_small_multiples_on_each_learners_own_budget(tmp_path, monkeypatch):
    figures = captured(monkeypatch, publish)
    paths = publish.plot_curves(CURVES, tmp_path, curves=paper_curves())
    assert [p.name for p in paths] == ["s-training-curves.png"]
    fig = figures[0]
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in panels] == ["lsa", "lsa[layers=5,clip=10]"]
    lsa, deep = panels
    assert lsa.get_xlim()[1] < 1200 and deep.get_xlim()[1] > 20000  # each on its own steps
    # lsa: a thin line per seed (the stuck seed stays at 0.4), their mean, then gd's and zero's losses
    seeds, mean = lsa.lines[:2], lsa.lines[2]
    assert [line.get_linewidth() < mean.get_linewidth() for line in seeds] == [True, True]
    assert list(seeds[1].get_ydata()) == [0.4] * 10
    assert mean.get_ydata()[-1] == pytest.approx((0.2 + 0.4) / 2)
    labels = lsa.get_legend_handles_labels()[1]
    assert labels == ["mean of 2 seeds", "gd: 0.2", "zero (zero predictor): 0.4"]  # gd: mean of its seeds, in distribution
    assert deep.get_legend_handles_labels()[1] == ["mean of 1 seed", "gd[steps=5]: 0.1", "zero (zero predictor): 0.4"]


def test_mean_trace_keeps_the_steps_every_seed_reached():
    full, partial = curve(range(100, 600, 100), 0.4, 0.2), curve(range(100, 400, 100), 0.4, 0.1)
    steps, mean = publish.mean_trace([full, partial], "eval_loss")
    assert steps == [100, 200, 300]
    assert mean == pytest.approx([(a["eval_loss"] + b["eval_loss"]) / 2 for a, b in zip(full, partial)])


def test_reference_lines_add_the_interpolated_model_of_its_suite():
    analyses = [{"analysis": "interpolation", "config": {}, "suite": "s", "seed": seed, "result": {"learner": "lsa", "loss_interpolated": v}}
                for seed, v in ((0, 0.2), (1, 0.3))]
    lines = publish.reference_lines(CURVES, analyses, "s", "lsa", paper_curves())
    assert lines == [("gd", 0.2), ("interpolated weights (trained + construction)", pytest.approx(0.25)), ("zero (zero predictor)", 0.4)]
    assert publish.reference_lines(CURVES, analyses, "other", "lsa", paper_curves()) == []


def published():
    results = Results(PUBLISHED)
    return results, publish.display_records(results), publish.display_analyses(results)


def test_reference_table_resolves_for_the_published_learners():
    """Every trained learner of the published reproduction is drawn against the learners the paper
    compares it with, at their published evaluation loss."""
    results, shown, analyses = published()
    panels = {(suite, learner) for suite, learners in publish.curves_by_learner(shown, "eval_loss").items()
              for learner in learners}
    assert {("linear", "lsa"), ("linear", "lsa[layers=2,recurrent=true]"), ("linear", "lsa[layers=5,clip=10]"),
            ("alternating", "copy-tf"), ("sine", "mlp-lsa")} <= panels
    curves = paper_curves()
    for suite, learner in panels:
        lines = dict(publish.reference_lines(shown, analyses, suite, learner, curves))
        present = [r for r in curves.references[learner] if publish.evaluation_loss(shown, suite, r) is not None]
        assert present and list(lines)[:len(present)] == present, (suite, learner)  # a comparison on every panel
        assert list(lines)[-1] == curves.baseline_line == "zero (zero predictor)"
        home = "linear" if suite == "linear-ood" else suite  # the suite's in-distribution task
        for ref in present:
            assert lines[ref] == pytest.approx(results.mean(ref, suite, home))
    drawn = {(s, lab): list(dict(publish.reference_lines(shown, analyses, s, lab, curves))) for s, lab in panels}
    assert drawn[("linear", "lsa")][:2] == ["gd", "interpolated weights (trained + construction)"]
    assert drawn[("linear", "lsa[layers=2,recurrent=true]")][:2] == ["gd[steps=2]", "gd++[steps=2]"]
    assert drawn[("linear", "lsa[layers=5,clip=10]")][:2] == ["gd[steps=5]", "gd[steps=5,per_step=true]"]
    assert drawn[("alternating", "copy-tf")][0] == "gd" and drawn[("sine", "mlp-lsa")][0] == "mlp-gd"
    interpolated = [a["result"]["loss_interpolated"] for a in analyses if a["analysis"] == "interpolation"]
    assert dict(publish.reference_lines(shown, analyses, "linear", "lsa", curves))["interpolated weights (trained + construction)"] == \
        pytest.approx(sum(interpolated) / len(interpolated))


def test_reference_table_names_learners_of_the_paper_spec(catalog):
    spec = catalog.reproductions["paper"]().spec()
    specs = {s for run in spec.runs for s in run.learners}
    known = {s for s in specs if s.split("[")[0] in catalog.learners}  # a plugin being edited may not load
    trainable = {s for s in known if "train" in catalog.learners[s.split("[")[0]].Config.model_fields}
    references = spec.curves.references
    assert trainable <= set(references) <= specs  # every trained learner has its comparison, and no stale entry
    assert set(references) - trainable <= specs - known
    for learner, refs in references.items():  # each reference is scored where the learner is
        scored = {s for run in spec.runs if learner in run.learners
                  for other in spec.runs if other.suite == run.suite for s in other.learners + [other.align_to]}
        assert set(refs) <= scored, learner


# --- shift plots ---------------------------------------------------------------------------------

def shifted(label, seed, group, task, value, loss, ref="gd", diff=None):
    paired = {} if diff is None else {"loss_diff": diff, "loss_diff_ci95": 0.002}
    return board_record(label, task, loss, seed=seed, group=group, value=value, ref=ref, **paired)


SHIFTS = [shifted(name, 0, "input range", f"input-range={v}", v, loss * v, diff=(loss - 0.2) * v)
          for name, loss in (("gd", 0.2), ("lsa", 0.2), ("gd++[steps=2]", 0.1), ("zero", 0.4)) for v in (1.0, 2.0)]
SHIFTS += [shifted(name, 0, "input law", f"input={law}", i, loss)
           for name, loss in (("gd", 0.2), ("lsa", 0.3)) for i, law in enumerate(("normal", "exponential", "laplace"))]


def paper_labels(catalog) -> dict:
    """linear-ood's axis labels and ratio reference (its suite file's [axes] and ratio_reference),
    for the test suite `s`: `plot_groups`' keyword arguments."""
    labels = plot_labels(catalog, ["linear-ood"])
    return {"axes": {("s", group): label for (_, group), label in labels["axes"].items()},
            "ratio_references": {"s": labels["ratio_references"]["linear-ood"]}}


def test_shift_plots_have_a_ratio_panel_distinct_styles_and_the_papers_axes(tmp_path, monkeypatch, catalog):
    figures = captured(monkeypatch, shift_plots)
    agg = leaderboard.aggregate(leaderboard.to_frame(SHIFTS))
    paths = leaderboard.plot_groups(agg, tmp_path, **paper_labels(catalog))
    assert [p.name for p in paths] == ["s-input-law.png", "s-input-range.png"]
    law, rng = figures
    loss, ratio = rng.axes
    assert ratio.get_xlabel() == "input range α: x ~ U(−α/2, α/2)^d  (α = 1: the training range)"
    assert ratio.get_ylabel() == "loss / gd's loss (line: gd)"
    drawn = {c.get_label(): c.lines[0] for c in loss.containers}  # errorbar: (data line, caps, bars)
    assert set(drawn) == {"gd", "lsa", "gd++[steps=2]", "zero"}
    styles = {(line.get_marker(), line.get_linestyle(), line.get_markerfacecolor() == "none") for line in drawn.values()}
    assert len(styles) == 4  # gd and lsa lie on top of each other, and both still show
    assert any(list(line.get_ydata()) == [1.0, 1.0] and line.get_color() == "k" for line in ratio.lines)  # gd's line
    order = leaderboard.learner_order(agg)
    _, ratios, exact, partly, broken = leaderboard.group_series(agg[agg.group == "input range"], "gd", order)
    assert set(ratios) == {"lsa", "gd++[steps=2]", "zero"} and not exact + partly + broken  # gd itself is the line
    assert [(v, r) for v, r, _ in ratios["gd++[steps=2]"]] == [(1.0, pytest.approx(0.5)), (2.0, pytest.approx(0.5))]
    assert [(v, r) for v, r, _ in ratios["zero"]] == [(1.0, pytest.approx(2.0)), (2.0, pytest.approx(2.0))]
    assert [ci for _, _, ci in ratios["lsa"]] == [pytest.approx(0.002 / 0.2), pytest.approx(0.002 / 0.4)]  # paired CI / gd
    law_ratio = law.axes[1]
    assert [t.get_text() for t in law_ratio.get_xticklabels()] == ["normal", "exponential", "laplace"]
    assert list(law_ratio.get_xticks()) == [0, 1, 2]  # categories, not the indices' spacing


def test_ratio_reference_is_the_records_reference_else_the_suites_declared_one():
    agg = leaderboard.aggregate(leaderboard.to_frame(SHIFTS))
    assert leaderboard.ratio_reference(agg, "s") == "gd"
    other = [{**r, "align_to": "gd++[steps=2]"} for r in SHIFTS]
    assert leaderboard.ratio_reference(leaderboard.aggregate(leaderboard.to_frame(other)), "s") == "gd++[steps=2]"
    plain = [{**r, "align_to": None, "metrics": {"loss": r["metrics"]["loss"]}} for r in SHIFTS if r["label"] != "gd"]
    assert leaderboard.ratio_reference(leaderboard.aggregate(leaderboard.to_frame(plain)), "s") is None


def test_shift_plot_without_a_reference_is_one_panel(tmp_path, monkeypatch):
    figures = captured(monkeypatch, shift_plots)
    plain = [{**r, "align_to": None, "metrics": {"loss": r["metrics"]["loss"]}} for r in SHIFTS if r["label"] != "gd"]
    leaderboard.plot_groups(leaderboard.aggregate(leaderboard.to_frame(plain)), tmp_path)
    assert [len(f.axes) for f in figures] == [1, 1]


def test_exact_cells_are_left_out_cell_by_cell(tmp_path, monkeypatch, catalog):
    """Least squares is exact once N >= d and blows up below: its exact cells are named, the rest drawn."""
    figures = captured(monkeypatch, shift_plots)
    records = [shifted("gd", 0, "context size", f"N={n}", n, 0.2) for n in (5, 20)]
    records += [shifted("least-squares", 0, "context size", "N=5", 5, 0.3), shifted("least-squares", 0, "context size", "N=20", 20, 1e-14)]
    leaderboard.plot_groups(leaderboard.aggregate(leaderboard.to_frame(records)), tmp_path, **paper_labels(catalog))
    loss = figures[0].axes[0]
    drawn = {c.get_label(): c.lines[0] for c in loss.containers}
    assert list(drawn["least-squares"].get_xdata()) == [5] and list(drawn["gd"].get_xdata()) == [5, 20]
    assert [t.get_text() for t in loss.texts] == ["not drawn where loss < 1e-06: least-squares"]
    assert figures[0].axes[1].get_xlabel() == "context size N: context pairs (x_i, y_i) per task"


def test_no_ratio_panel_against_an_exact_reference(tmp_path, monkeypatch):
    """Least squares on noiseless linear tasks is exact (loss ~1e-13): loss ratios to it would be
    ~1e13 and say nothing, so a suite aligned to it gets no ratio panel."""
    figures = captured(monkeypatch, shift_plots)
    records = [{**shifted("least-squares", 0, "x scale", f"x={v}", v, 1e-13), "align_to": "least-squares"}
               for v in (1, 2)]
    records += [{**shifted("zero", 0, "x scale", f"x={v}", v, 10.0 * v), "align_to": "least-squares"} for v in (1, 2)]
    leaderboard.plot_groups(leaderboard.aggregate(leaderboard.to_frame(records)), tmp_path)
    assert [len(f.axes) for f in figures] == [1]
