"""GD++'s curvature correction as preconditioning: condition numbers before and after its steps."""

from __future__ import annotations

import pytest
import torch

from iclbench.analysis import AnalysisContext
from iclbench_plugins.analyses.conditioning import condition_numbers, eigenvalue_map, range_condition


def test_one_step_maps_each_eigenvalue_in_closed_form():
    """S = diag(1, 2, 4): after x <- x (I - g S) its eigenvalues are l (1 - g l)^2."""
    lam, N, g = torch.tensor([1.0, 2.0, 4.0]), 6, 0.2
    x = torch.zeros(1, N, 3, dtype=torch.float64)
    x[0, :3] = torch.diag((N * lam).sqrt())  # X^T X / N = diag(lam)
    cond = condition_numbers(x, [g])
    after = lam * (1 - g * lam) ** 2  # 0.64, 0.72, 0.16
    assert cond[0, 0].item() == pytest.approx(4.0)
    assert cond[1, 0].item() == pytest.approx(float(after.max() / after.min()))


def test_the_tuned_correction_lowers_the_condition_number(catalog, tmp_path):
    ctx = AnalysisContext(catalog, catalog.suites.load("linear", catalog), 0, torch.device("cpu"), 500, tmp_path)
    res = catalog.analyses["gd++-conditioning"](learner="gd++[steps=2,eta=13.3,gamma=1.7]").run(ctx)
    before, *after = res["median_condition"]
    assert res["N"] == 25 and len(after) == 2 and res["gamma"] == [1.7, 1.7]
    assert after[0] < 0.6 * before  # one step at gamma 1.7 roughly halves it for N = 25, d = 10
    assert (tmp_path / "gdpp-conditioning-seed0.png").exists()


def test_the_range_condition_number_follows_the_eigenvalue_map():
    """Fig 13 centre: on [1, 4] with gamma = 0.2, f = l (1 - 0.2 l)^2 peaks at l = 1 / (3 gamma) = 5/3
    (f = 20/27) and is least at l = 4 (0.16), so kappa++ = (20/27) / 0.16; gamma = 0 keeps 4."""
    assert eigenvalue_map(torch.tensor([1.0, 4.0]), 0.2).tolist() == pytest.approx([0.64, 0.16])
    assert range_condition(1.0, 4.0, 0.0) == pytest.approx(4.0)
    assert range_condition(1.0, 4.0, 0.2) == pytest.approx((20 / 27) / 0.16, rel=1e-5)


def test_the_analysis_reports_the_range_condition_at_the_tuned_gamma(catalog, tmp_path):
    ctx = AnalysisContext(catalog, catalog.suites.load("linear", catalog), 0, torch.device("cpu"), 300, tmp_path)
    res = catalog.analyses["gd++-conditioning"](learner="gd++[steps=2,eta=13.3,gamma=1.7]").run(ctx)
    assert res["range_condition_before"] == pytest.approx(res["lambda_max"] / res["lambda_min"])
    assert res["range_condition_tuned"] == pytest.approx(range_condition(res["lambda_min"], res["lambda_max"], 1.7))
    assert res["range_condition"][0] == pytest.approx(res["range_condition_before"], rel=1e-6)  # the grid starts at 0
    assert len(res["gamma_grid"]) == len(res["range_condition"]) == 81


def test_a_learner_without_curvature_correction_is_refused(catalog, tmp_path):
    ctx = AnalysisContext(catalog, catalog.suites.load("linear", catalog), 0, torch.device("cpu"), 50, tmp_path)
    with pytest.raises(ValueError, match="no curvature correction"):
        catalog.analyses["gd++-conditioning"](learner="gd[eta=1.0]").run(ctx)
