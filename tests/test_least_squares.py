"""Least squares (exact and minimum-norm) and ridge (limits in lambda, tuning) against closed forms."""

from __future__ import annotations

import pytest
import torch

from helpers import fitted, predict, sample64
from iclbench.metrics import task_losses


@pytest.mark.parametrize("N", [10, 20])
def test_least_squares_is_exact_when_n_at_least_d(catalog, N):
    ep = sample64(catalog.tasks["linear-regression"]({"N": N}), 2000, seed=N)
    pred = predict(catalog.learners["least-squares"](), ep)
    assert pred.dtype == torch.float64
    assert float(task_losses(pred, ep.query_y).mean()) < 1e-8


def test_least_squares_is_minimum_norm_when_n_below_d(catalog):
    ep = sample64(catalog.tasks["linear-regression"]({"N": 5, "dy": 2}), 300, seed=1)
    w = torch.linalg.pinv(ep.context_x) @ ep.context_y  # (B, d, dy): the minimum-norm solution
    expected = torch.einsum("bdo,bd->bo", w, ep.query_x)
    pred = predict(catalog.learners["least-squares"](), ep)
    assert torch.allclose(pred, expected, atol=1e-10, rtol=0)
    # underdetermined: it fits the context exactly but cannot know the query
    assert float(task_losses(pred, ep.query_y).mean()) > 0.05


def test_least_squares_is_exact_with_a_coordinate_zero_in_every_point(catalog):
    """A coordinate that is 0 in all context points (a dead feature) leaves the fit unique on the
    others; LAPACK's gelsy, as torch calls it, misses it (residual ~10), so it must not be used."""
    ep = sample64(catalog.tasks["linear-regression"]({"N": 20}), 300, seed=2)
    cx, qx = ep.context_x.clone(), ep.query_x.clone()
    cx[:, :, 0], qx[:, 0] = 0.0, 0.0  # the first of 10 coordinates is dead in context and query
    W = torch.linalg.pinv(cx) @ ep.context_y  # (B, d, 1) minimum norm
    dead = type(ep)(cx, cx @ W, qx, torch.einsum("bdo,bd->bo", W, qx))  # labels from a teacher on the live ones
    pred = predict(catalog.learners["least-squares"](), dead)
    assert torch.allclose(pred, dead.query_y, atol=1e-9, rtol=0)


def test_least_squares_keeps_float32_in_float32(catalog, linear):
    ep = linear.sample(64, generator=torch.Generator().manual_seed(0), device="cpu")
    assert predict(catalog.learners["least-squares"](), ep).dtype == torch.float32


def test_ridge_tends_to_least_squares_as_lambda_vanishes(catalog):
    ep = sample64(catalog.tasks["linear-regression"]({"N": 20}), 500, seed=2)
    ls = predict(catalog.learners["least-squares"](), ep)
    ridge = predict(catalog.learners["ridge"]({"lam": 1e-10}), ep)
    assert torch.allclose(ridge, ls, atol=1e-6, rtol=0)


def test_large_lambda_shrinks_to_scaled_averaging(catalog, linear):
    ep = sample64(linear, 500, seed=3)
    lam = 1e8
    ridge = predict(catalog.learners["ridge"]({"lam": lam}), ep)
    # (X^T X + N lam I)^-1 ~ I / (N lam): the prediction is sum_i y_i x_i^T x_q / (N lam)
    corr = torch.einsum("bno,bnd,bd->bo", ep.context_y, ep.context_x, ep.query_x)
    assert ridge.abs().max() < 1e-7
    assert torch.allclose(ridge * (ep.n_context * lam), corr, rtol=1e-6, atol=1e-12)


def test_ridge_with_noise_matches_the_normal_equations(catalog):
    task = catalog.tasks["linear-regression"]({"N": 6, "d": 4, "dy": 2, "noise_std": 0.3})
    ep = sample64(task, 4, seed=4)
    lam = 0.05
    pred = predict(catalog.learners["ridge"]({"lam": lam}), ep)
    for b in range(4):
        X, Y = ep.context_x[b], ep.context_y[b]
        # minimiser of 1/(2N) sum ||W x_i - y_i||^2 + lam/2 ||W||^2
        W = torch.linalg.solve(X.T @ X / 6 + lam * torch.eye(4, dtype=X.dtype), X.T @ Y / 6).T
        assert torch.allclose(pred[b], W @ ep.query_x[b], atol=1e-12, rtol=0)


def test_tuned_ridge_picks_from_its_grid_and_beats_zero(catalog):
    task = catalog.tasks["linear-regression"]({"noise_std": 0.5})
    grid = [1e-4, 1e-2, 1e-1, 1.0, 10.0]
    ridge = fitted(catalog, "ridge", task, grid=grid, tune_tasks=2000)
    lam = ridge.hyperparameters()["lam"]
    assert lam in grid
    assert lam != grid[0] and lam != grid[-1]  # noisy labels: neither no nor full shrinkage is best
    ep = sample64(task, 2000, seed=77)
    loss = float(task_losses(predict(ridge, ep), ep.query_y).mean())
    zero = float(0.5 * ep.query_y.pow(2).sum(-1).mean())
    assert loss < 0.7 * zero


def test_untuned_ridge_refuses_to_predict(catalog, linear):
    with pytest.raises(RuntimeError, match="lam"):
        catalog.learners["ridge"]().predict(sample64(linear, 4))
