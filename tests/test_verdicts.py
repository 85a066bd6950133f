"""Three-valued verdicts on intervals: each side of a tolerance, and the straddling middle."""

from __future__ import annotations

import pytest

from iclbench.verdicts import Verdict, above, all_of, below, label, resolving, within


@pytest.mark.parametrize("x, ci, holds", [
    (0.01, 0.005, True),     # [0.005, 0.015] inside ±0.02
    (-0.01, 0.009, True),
    (0.03, 0.005, False),    # [0.025, 0.035] outside
    (-0.05, 0.02, False),
    (0.015, 0.01, None),     # [0.005, 0.025] crosses +0.02
    (0.025, 0.01, None),     # point outside, interval reaches inside
])
def test_within_decides_on_the_interval(x, ci, holds):
    v = within(x, ci, 0.02, 3, "loss vs GD-1")
    assert v.holds is holds
    assert (v.why == "") is (holds is True)
    if holds is not True:
        assert f"loss vs GD-1 {x:+.1%} ± {ci:.1%}" in v.why


def test_an_inconclusive_verdict_says_how_many_seeds_would_resolve_it():
    v = within(0.015, 0.01, 0.02, 3, "loss")  # margin 0.005 from half-width 0.01 over 3 seeds: 3 * 4 = 12
    assert v.holds is None and v.why.endswith("about 12 seeds would resolve it (now 3)")
    assert resolving(0.01, 0.0, 3).startswith("the estimate sits on the tolerance")


@pytest.mark.parametrize("x, ci, holds", [(0.3, 0.1, True), (0.01, 0.02, False), (0.1, 0.1, None)])
def test_above_and_below_are_one_sided(x, ci, holds):
    assert above(x, ci, 0.05, 3, "gap").holds is holds
    assert below(-x, ci, -0.05, 3, "gap").holds is holds


def test_all_of_fails_first_then_is_inconclusive_and_keeps_the_deciding_reasons():
    yes, no, maybe = Verdict(True), Verdict(False, "too far"), Verdict(None, "too noisy")
    assert all_of([yes, maybe, no]) == Verdict(False, "too far")
    assert all_of([yes, maybe]) == Verdict(None, "too noisy")
    assert all_of([yes, yes]) == Verdict(True)
    assert [label(v) for v in (True, False, None)] == ["yes", "no", "inconclusive"]
