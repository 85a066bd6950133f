"""Metrics: task losses, confidence intervals over tasks and seeds, sensitivities, alignment."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import predict, sample64
from iclbench.metrics import across_seeds, alignment, mean_ci95, sensitivities, t975, task_losses


def test_task_losses_are_half_squared_norms():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert task_losses(pred, target).tolist() == [2.5, 12.5]


def test_mean_ci95_on_known_values():
    mean, ci = mean_ci95(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5
    assert ci == pytest.approx(1.96 * math.sqrt(5 / 3) / 2, rel=1e-12)  # sample sd sqrt(5/3), n = 4
    mean, ci = mean_ci95(torch.tensor([7.0]))
    assert mean == 7.0 and math.isnan(ci)


def test_across_seeds_uses_student_t():
    mean, ci = across_seeds([1.0, 2.0, 3.0], [0.1, 0.1, 0.1])
    assert mean == 2.0
    assert ci == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-12)  # t(2 df) = 4.303, sd = 1
    mean, ci = across_seeds([1.0, 3.0], [0.5, 0.5])
    assert (mean, ci) == (2.0, pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2)))
    assert across_seeds([0.25], [0.125]) == (0.25, 0.125)  # one seed keeps its own CI


def test_t_quantiles():
    assert (t975(1), t975(2), t975(4), t975(30), t975(31), t975(1000)) == (12.706, 4.303, 2.776, 2.042, 1.96, 1.96)
    assert math.isnan(t975(0))


def test_gd1_sensitivity_is_the_closed_form(catalog):
    task = catalog.tasks["linear-regression"]({"dy": 2, "N": 6, "d": 3})
    ep = sample64(task, 100, seed=1)
    eta = 0.8
    sens = sensitivities(catalog.learners["gd"]({"eta": eta}).predict, ep)
    # d/dx_q of (eta/N) sum_i y_i x_i^T x_q = (eta/N) sum_i y_i x_i^T, one (dy, dx) matrix per task
    expected = eta / 6 * torch.einsum("bno,bnd->bod", ep.context_y, ep.context_x)
    assert sens.shape == (100, 2, 3)
    assert torch.allclose(sens, expected, atol=1e-12, rtol=0)


def test_least_squares_sensitivity_is_the_recovered_teacher(catalog, linear):
    ep = sample64(linear, 50, seed=2)
    sens = sensitivities(catalog.learners["least-squares"]().predict, ep)  # (B, 1, d): W^T
    W = torch.linalg.lstsq(ep.context_x, ep.context_y).solution.transpose(1, 2)
    assert torch.allclose(sens, W, atol=1e-8, rtol=0)


def test_constant_prediction_has_zero_sensitivity(catalog, linear):
    ep = sample64(linear, 20, seed=3)
    sens = sensitivities(catalog.learners["zero"]().predict, ep)
    assert sens.shape == (20, 1, 10) and torch.count_nonzero(sens) == 0


def test_alignment_of_a_learner_with_itself(catalog, linear):
    ep = sample64(linear, 200, seed=4)
    gd = catalog.learners["gd"]({"eta": 5.0})
    p, s = predict(gd, ep), sensitivities(gd.predict, ep)
    a = alignment(p, p, s, s)
    assert torch.count_nonzero(a["pred_diff"]) == 0 and torch.count_nonzero(a["sens_diff"]) == 0
    assert torch.allclose(a["sens_cos"], torch.ones(200, dtype=torch.float64), atol=1e-12, rtol=0)


def test_alignment_of_scaled_gd_and_zero(catalog, linear):
    ep = sample64(linear, 200, seed=5)
    one, two = catalog.learners["gd"]({"eta": 1.0}), catalog.learners["gd"]({"eta": 2.0})
    p1, p2 = predict(one, ep), predict(two, ep)
    s1, s2 = sensitivities(one.predict, ep), sensitivities(two.predict, ep)
    a = alignment(p2, p1, s2, s1)
    # eta = 2 doubles prediction and sensitivity: same direction, differences of one copy
    assert torch.allclose(a["pred_diff"], p1.abs()[:, 0], atol=1e-12, rtol=0)
    assert torch.allclose(a["sens_cos"], torch.ones(200, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.allclose(a["sens_diff"], s1.flatten(1).norm(dim=-1), atol=1e-12, rtol=0)
    z = alignment(torch.zeros_like(p1), p1, torch.zeros_like(s1), s1)
    assert torch.count_nonzero(z["sens_cos"]) == 0
    assert torch.allclose(z["sens_diff"], s1.flatten(1).norm(dim=-1), atol=0, rtol=0)


def test_robust_loss_ignores_a_few_exploding_tasks():
    from iclbench.metrics import robust_loss

    losses = torch.cat([torch.arange(1.0, 199.0), torch.tensor([1e6, 1e9])])  # 200 tasks, two exploding
    r = robust_loss(losses)
    assert r["loss_median"] == pytest.approx(100.5)
    assert r["loss_trimmed"] == pytest.approx(torch.arange(3.0, 199.0).mean().item())  # 2 cut from each tail
    assert float(losses.mean()) > 5e6
