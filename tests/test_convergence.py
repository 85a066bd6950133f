"""Whether a training's held-out loss was still falling when its budget ran out."""

from __future__ import annotations

import pytest

from iclbench.convergence import trend
from iclbench_plugins.reproductions.paper import RECURRENT, Paper

from test_paper import depth_records, results


def curve(values, every=100):
    return [{"step": every * (i + 1), "eval_loss": v} for i, v in enumerate(values)]


def test_a_falling_tail_is_still_falling_and_a_flat_one_is_not():
    falling = trend(curve([1.0 - 0.01 * i for i in range(50)]))  # -0.01 per 100 steps: -0.1 per 1000
    assert falling.still_falling and falling.slope == pytest.approx(-0.1) and falling.rows == 10
    flat = trend(curve([0.5 + (0.01 if i % 2 else -0.01) for i in range(50)]))
    assert not flat.still_falling and abs(flat.slope) < flat.ci
    assert trend(curve([0.3, 0.2])) is None


def test_the_k4_reason_says_the_model_was_still_improving(tmp_path):
    """The published claim 17 failed on recurrent K = 4, 5 without saying their held-out losses
    were still falling at step 5000 (K = 4 seed 1: 0.0872 at 3800 -> 0.0693 at 4600)."""
    recs = depth_records({2: 0.01, 3: -0.02, 4: 0.19, 5: 0.0}, {2: -0.1, 3: 0.0, 4: 0.04, 5: 0.02})
    for x in recs:
        if x["label"] == RECURRENT[4]:
            x["fit_info"] = {"curve": curve([0.2 - 0.0025 * i for i in range(50)]), "train_seconds": 1.0}
    found = Paper.depth_recurrent(results(tmp_path, recs))
    assert found.holds is False and "K=4 (5000 steps) vs GD++-K +19.0%" in found.why
    assert "seed 0 held-out loss still falling at step 5000 (-0.025 ± " in found.why
    assert found.why.endswith("so the budget may be the cause")
