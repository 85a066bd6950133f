"""Kernel ridge and the Nadaraya-Watson smoother: interpolation, 1-NN limit, wide-bandwidth limit."""

from __future__ import annotations

import torch

from helpers import fitted, predict, sample64
from iclbench.metrics import task_losses


def test_kernel_ridge_with_tiny_lambda_interpolates_the_context(catalog, linear):
    ep = sample64(linear, 200, seed=1)
    kr = catalog.learners["kernel-ridge"]({"bandwidth": 0.5, "lam": 1e-10})
    for j in (0, 4, 9):
        pred = predict(kr, ep.with_query_x(ep.context_x[:, j]))
        assert torch.allclose(pred, ep.context_y[:, j], atol=1e-6, rtol=0)


def test_kernel_ridge_matches_the_dual_formula(catalog):
    task = catalog.tasks["linear-regression"]({"N": 5, "d": 2, "dy": 2})
    ep = sample64(task, 3, seed=2)
    h, lam = 0.7, 0.1
    pred = predict(catalog.learners["kernel-ridge"]({"bandwidth": h, "lam": lam}), ep)
    for b in range(3):
        X, Y, q = ep.context_x[b], ep.context_y[b], ep.query_x[b]
        K = torch.tensor([[float(torch.exp(-((xi - xj) ** 2).sum() / (2 * h * h))) for xj in X] for xi in X],
                         dtype=torch.float64)
        k = torch.exp(-((X - q) ** 2).sum(-1) / (2 * h * h))
        assert torch.allclose(pred[b], k @ torch.linalg.solve(K + lam * torch.eye(5, dtype=K.dtype), Y), atol=1e-12)


def test_kernel_smoother_with_tiny_bandwidth_is_one_nearest_neighbour(catalog, linear):
    ep = sample64(linear, 500, seed=3)
    smooth = predict(catalog.learners["kernel-smoother"]({"bandwidth": 1e-4}), ep)
    nn1 = predict(catalog.learners["knn"]({"k": 1}), ep)
    assert torch.allclose(smooth, nn1, atol=1e-9, rtol=0)


def test_kernel_smoother_with_huge_bandwidth_is_the_label_mean(catalog, linear):
    ep = sample64(linear, 200, seed=4)
    smooth = predict(catalog.learners["kernel-smoother"]({"bandwidth": 1e4}), ep)
    assert torch.allclose(smooth, ep.context_y.mean(1), atol=1e-7, rtol=0)


def test_tuned_kernels_pick_bandwidths_relative_to_the_median_distance(catalog):
    task = catalog.tasks["sine"]()
    ep = sample64(task, 1000, seed=5)
    for name in ("kernel-ridge", "kernel-smoother"):
        learner = fitted(catalog, name, task, tune_tasks=500)
        hp = learner.hyperparameters()
        assert hp["bandwidth"] > 0
        loss = float(task_losses(predict(learner, ep), ep.query_y).mean())
        zero = float(0.5 * ep.query_y.pow(2).sum(-1).mean())
        assert loss < 0.5 * zero  # a nonlinear task where kernels do well
