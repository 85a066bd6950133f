"""Baselines of Garg et al.: zero, k-nearest neighbours and averaging, checked by construction."""

from __future__ import annotations

import torch

from helpers import predict, sample64
from iclbench.episode import Episode
import iclbench_plugins.learners.baselines as baselines
from iclbench.metrics import task_losses
from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog


def test_zero_loss_is_half_the_mean_squared_label(catalog, linear):
    ep = sample64(linear, 4000, seed=1)
    pred = predict(catalog.learners["zero"](), ep)
    assert torch.equal(pred, torch.zeros_like(ep.query_y))
    expected = 0.5 * sum(float(y @ y) for y in ep.query_y) / 4000
    assert abs(float(task_losses(pred, ep.query_y).mean()) - expected) < 1e-12
    # E||W x||^2 = d * E[x^2] = 10 / 12 for W ~ N(0, I), x ~ U(-0.5, 0.5): the loss is about 5/12
    assert abs(expected - 5 / 12) < 0.04  # ~4 standard errors


def test_averaging_is_one_gd_step_with_unit_rate(catalog, linear):
    ep = sample64(linear, 500, seed=2)
    avg = predict(catalog.learners["averaging"](), ep)
    gd = predict(catalog.learners["gd"]({"eta": 1.0}), ep)
    assert torch.allclose(avg, gd, atol=1e-12, rtol=0)


def test_one_nearest_neighbour_returns_the_closest_label(catalog):
    ep = sample64(catalog.tasks["linear-regression"]({"dy": 2, "N": 7, "d": 3}), 50, seed=3)
    pred = predict(catalog.learners["knn"]({"k": 1}), ep)
    for b in range(50):
        dists = [float(((x - ep.query_x[b]) ** 2).sum()) for x in ep.context_x[b]]
        assert torch.equal(pred[b], ep.context_y[b, dists.index(min(dists))])


def test_knn_averages_the_k_closest_labels():
    # context on a line at 0, 1, 2, 3, 10 with labels 0, 10, 20, 30, 100; query at 1.2
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0], dtype=torch.float64)[None, :, None]
    ep = Episode(x, 10 * x, torch.tensor([[1.2]], dtype=torch.float64), torch.tensor([[12.0]], dtype=torch.float64))
    pm = make_plugin_manager(entry_points=False)
    pm.add(baselines, "baselines", "test")
    knn = build_catalog(pm).learners["knn"]
    assert float(predict(knn({"k": 2}), ep)) == 15.0  # neighbours 1 and 2
    assert float(predict(knn({"k": 3}), ep)) == 10.0  # 0, 1, 2
    assert float(predict(knn({"k": 50}), ep)) == 32.0  # k > N: all five
