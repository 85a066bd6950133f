"""Who is best and who is tied with it (`iclbench.ranking`): synthetic records on each side of
the test, closed-form p-values (Student t with 2 degrees of freedom, the normal tail), Holm's
adjustment, the one-seed paths (per-task samples, the paired Δ against the best, untested),
directions, diverged rows and the heavy-tail flag."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from iclbench import samples
from iclbench.ranking import ALPHA, headline_metric, holm, standings
from iclbench.student_t import betainc, t_sf


def rec(learner: str, seed: int, loss: float, **extra) -> dict:
    metrics = {"loss": loss, "loss_ci95": 0.01, **extra.pop("metrics", {})}
    return {"suite": "s", "group": None, "task_label": "t", "task": "t", "label": learner, "learner": learner,
            "learner_config": {}, "seed": seed, "n_tasks": 100, "status": extra.pop("status", "ok"),
            "metrics": metrics, "align_to": extra.pop("align_to", None), **extra}


def t2_sf(t: float) -> float:
    """P(T > t) for 2 degrees of freedom, in closed form."""
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


def one_sided(diffs: list[float]) -> float:
    n = len(diffs)
    m = sum(diffs) / n
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (n - 1))
    return t2_sf(m / (sd / math.sqrt(n)))


def test_student_t_tail_matches_closed_forms_and_tables():
    assert t_sf(3.0, 2) == pytest.approx(t2_sf(3.0), abs=1e-12)
    assert t_sf(1.0, 1) == pytest.approx(0.25, abs=1e-12)  # Cauchy: 1/2 - atan(1)/pi
    assert t_sf(2.228, 10) == pytest.approx(0.025, abs=1e-4)  # the 97.5 % quantile of t(10)
    assert t_sf(-2.228, 10) == pytest.approx(0.975, abs=1e-4) and t_sf(0.0, 7) == 0.5
    assert t_sf(1.959964, math.inf) == pytest.approx(0.025, abs=1e-6)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-4)  # 1 - sum_{j<2} C(4,j) .4^j .6^(4-j)


def test_holm_steps_down_and_keeps_the_order():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.4, "b": 0.6}) == pytest.approx({"a": 0.8, "b": 0.8})


def test_three_seeds_a_consistent_gap_is_worse_a_noisy_one_tied():
    best = [1.0, 1.1, 0.9]
    worse = [1.5, 1.62, 1.41]  # +0.5 every seed, a little spread
    noisy = [1.3, 0.9, 1.0]  # +0.3, -0.2, +0.1
    records = [rec("A", s, x) for s, x in enumerate(best)] + [rec("B", s, x) for s, x in enumerate(worse)] + \
        [rec("C", s, x) for s, x in enumerate(noisy)]
    rows = {r.learner: r for r in standings(records)}
    order = [r.learner for r in standings(records)]
    assert order == ["A", "C", "B"] and rows["A"].best and rows["A"].tied is None
    p_b = one_sided([w - b for w, b in zip(worse, best)])
    p_c = one_sided([w - b for w, b in zip(noisy, best)])
    expected = holm({"B": p_b, "C": p_c})
    assert rows["B"].p_holm == pytest.approx(expected["B"], rel=1e-9) and rows["B"].test == "seeds"
    assert rows["C"].p_holm == pytest.approx(expected["C"], rel=1e-9)
    assert rows["B"].tied is False and expected["B"] < ALPHA
    assert rows["C"].tied is True and expected["C"] >= ALPHA
    assert rows["B"].gap == pytest.approx(sum(worse) / 3 - 1.0) and rows["B"].ratio == pytest.approx(sum(worse) / 3)
    assert rows["A"].mean == pytest.approx(1.0) and rows["A"].ci95 == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)


def test_an_identical_learner_is_tied_and_higher_is_better_ranks_down_the_other_way():
    records = [rec("A", s, 1.0 + s) for s in range(3)] + [rec("A-copy", s, 1.0 + s) for s in range(3)]
    rows = {r.learner: r for r in standings(records)}
    assert rows["A-copy"].tied is True and rows["A-copy"].p_holm == 1.0
    acc = [rec(k, s, 0.0, metrics={"accuracy": a + 0.01 * s}) for k, a in (("lo", 0.5), ("hi", 0.9)) for s in range(3)]
    rows = standings(acc, "accuracy")
    assert [r.learner for r in rows] == ["hi", "lo"] and rows[1].gap == pytest.approx(0.4)
    assert rows[1].tied is False  # 0.4 worse on every seed, no spread: p = 0


def test_one_seed_uses_the_paired_delta_against_the_best_else_says_untested():
    records = [rec("best", 0, 1.0), rec("paired", 0, 1.05, align_to="best", metrics={"loss_diff": 0.05, "loss_diff_ci95": 0.04}),
               rec("other", 0, 1.02)]
    rows = {r.learner: r for r in standings(records)}
    z = 0.05 / (0.04 / 1.96)
    assert rows["paired"].test == "paired Δ"
    assert rows["paired"].p_holm == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9)  # one comparison
    assert rows["paired"].tied is False
    assert rows["other"].tied is None and rows["other"].test == "" and rows["other"].p_holm is None


def test_one_seed_with_per_task_samples_runs_a_paired_test_over_tasks(tmp_path: Path):
    g = torch.Generator().manual_seed(0)
    base = torch.rand(400, generator=g, dtype=torch.float64)  # (B,) the best's per-task losses
    noise = torch.randn(400, generator=g, dtype=torch.float64)  # (B,)
    shift = 0.01 + 0.2 * (noise - noise.mean())  # (B,) paired noise around a mean of exactly +0.01
    records = []
    for name, losses in (("best", base), ("next", base + shift)):
        r = rec(name, 0, float(losses.mean()))
        r["samples"] = samples.write(tmp_path, r, {"losses": losses})
        records.append(r)
    rows = {r.learner: r for r in standings(records, root=tmp_path)}
    d = shift.numpy()
    z = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    assert rows["next"].test == "tasks"
    assert rows["next"].p_holm == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert rows["next"].tied == (rows["next"].p_holm >= ALPHA)
    rows = {r.learner: r for r in standings(records)}  # without the folder, no samples: untested
    assert rows["next"].tied is None


def test_diverged_rows_rank_last_untested_and_heavy_tails_are_flagged():
    records = [rec("ok", s, 1.0, metrics={"loss_trimmed": 0.95, "loss_median": 0.4}) for s in range(2)] + \
        [rec("tail", s, 2.0, metrics={"loss_trimmed": 1.2, "loss_median": 0.1}) for s in range(2)] + \
        [rec("blown", 0, 0.5), rec("blown", 1, float("inf"), status="diverged")]
    rows = standings(records)
    assert [r.learner for r in rows] == ["ok", "tail", "blown"]
    assert rows[2].status == "diverged" and rows[2].mean is None and rows[2].tied is None
    assert not rows[0].heavy_tail and rows[0].median == pytest.approx(0.4)
    assert rows[1].heavy_tail and rows[1].median == pytest.approx(0.1)  # 2.0 > 1.5 x 1.2


def test_the_headline_metric_is_the_loss_over_positions_where_there_is_one():
    assert headline_metric([rec("a", 0, 1.0)]) == "loss"
    assert headline_metric([rec("a", 0, 1.0, metrics={"position_loss": 0.3})]) == "position_loss"
    rows = standings([rec("a", 0, 1.0, metrics={"position_loss": 0.3}), rec("b", 0, 0.5, metrics={"position_loss": 0.6})])
    assert [r.learner for r in rows] == ["a", "b"]  # ranked by the loss over positions, not the last position's
    assert np.isclose(rows[1].gap, 0.3)
