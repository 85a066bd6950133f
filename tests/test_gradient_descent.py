"""GD and GD++ learners against closed forms, explicit autograd steps and a loop reference."""

from __future__ import annotations

import pytest
import torch

from helpers import fitted, gen, predict, sample64
from iclbench.tuning import training_sample


def test_gd1_is_scaled_correlation_with_the_query(catalog, linear):
    ep = sample64(linear, 300)
    eta = 0.7
    # (eta / N) sum_i y_i x_i^T x_q
    expected = eta / ep.n_context * torch.einsum("bno,bnd,bd->bo", ep.context_y, ep.context_x, ep.query_x)
    got = predict(catalog.learners["gd"]({"eta": eta}), ep)
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, atol=1e-10, rtol=0)


def test_tuned_gd1_rate_is_the_least_squares_optimum(catalog, linear):
    seed, n = 11, 2000
    learner = fitted(catalog, "gd", linear, seed=seed, tune_tasks=n)
    ep = training_sample(linear, n, gen(seed), "cpu")  # the very tasks fit() tuned on
    p = predict(catalog.learners["gd"]({"eta": 1.0}), ep)  # prediction is eta * p
    eta_star = float((p * ep.query_y).sum() / (p * p).sum())
    (eta,) = learner.hyperparameters()["eta"]
    assert abs(eta - eta_star) / eta_star < 1e-6


def explicit_gd(x, y, q, etas):
    """K autograd gradient steps on L(W) = 1/(2N) sum ||W x_i - y_i||^2 from W0 = 0, one task."""
    N = x.shape[0]
    W = torch.zeros(y.shape[1], x.shape[1], dtype=x.dtype)
    for eta in etas:
        W = W.detach().requires_grad_(True)
        loss = ((x @ W.T - y) ** 2).sum() / (2 * N)
        (grad,) = torch.autograd.grad(loss, W)
        W = W - eta * grad
    return W.detach() @ q


@pytest.mark.parametrize("etas", [[0.9], [1.5, 0.6], [2.0, 1.0, 0.5]])
def test_gd_k_equals_explicit_gradient_steps(catalog, etas):
    task = catalog.tasks["linear-regression"]({"dy": 2, "N": 12, "d": 4})
    ep = sample64(task, 4, seed=3)
    got = predict(catalog.learners["gd"]({"steps": len(etas), "eta": etas}), ep)
    for b in range(4):
        ref = explicit_gd(ep.context_x[b], ep.context_y[b], ep.query_x[b], etas)
        assert torch.allclose(got[b], ref, atol=1e-10, rtol=0)


def reference_gdpp(x, y, q, etas, gammas):
    """GD++ on one task in the token view (plain loops over context points).

    Step k: dW = eta_k/N sum_j r_j x_j^T; every residual r_j -= dW x_j and the query's label
    entry (starting at 0) -= dW q; then every input x <- (I - gamma_k S) x, S = sum_j x_j x_j^T / N.
    The prediction is minus the query's label entry.
    """
    N = x.shape[0]
    xs, rs = [x[j].clone() for j in range(N)], [y[j].clone() for j in range(N)]
    rq = torch.zeros(y.shape[1], dtype=x.dtype)
    for eta, gamma in zip(etas, gammas):
        dW = sum(torch.outer(rs[j], xs[j]) for j in range(N)) * (eta / N)
        rs = [rs[j] - dW @ xs[j] for j in range(N)]
        rq = rq - dW @ q
        S = sum(torch.outer(xs[j], xs[j]) for j in range(N)) / N
        xs = [xs[j] - gamma * (S @ xs[j]) for j in range(N)]
        q = q - gamma * (S @ q)
    return -rq


@pytest.mark.parametrize("etas,gammas", [([1.2], [0.8]), ([1.5, 0.9], [0.5, 1.1]), ([2.0, 1.0, 0.7], [0.3, 0.9, 1.4])])
def test_gdpp_equals_the_explicit_transformation(catalog, etas, gammas):
    task = catalog.tasks["linear-regression"]({"dy": 2, "N": 8, "d": 3, "input_low": -1.0, "input_high": 1.0})
    ep = sample64(task, 4, seed=5)
    got = predict(catalog.learners["gd++"]({"steps": len(etas), "eta": etas, "gamma": gammas}), ep)
    for b in range(4):
        ref = reference_gdpp(ep.context_x[b], ep.context_y[b], ep.query_x[b], etas, gammas)
        assert torch.allclose(got[b], ref, atol=1e-10, rtol=0)


def test_gdpp_with_zero_gamma_is_gd_and_one_step_ignores_gamma(catalog, linear):
    ep = sample64(linear, 200)
    gd = predict(catalog.learners["gd"]({"steps": 2, "eta": [3.0, 2.0]}), ep)
    gdpp0 = predict(catalog.learners["gd++"]({"steps": 2, "eta": [3.0, 2.0], "gamma": 0.0}), ep)
    assert torch.allclose(gdpp0, gd, atol=1e-12, rtol=0)
    one = predict(catalog.learners["gd"]({"eta": 3.0}), ep)
    one_pp = predict(catalog.learners["gd++"]({"eta": 3.0, "gamma": 5.0}), ep)
    assert torch.allclose(one_pp, one, atol=1e-12, rtol=0)
    # and the gamma of a two-step GD++ does change the prediction
    gdpp = predict(catalog.learners["gd++"]({"steps": 2, "eta": [3.0, 2.0], "gamma": 1.0}), ep)
    assert (gdpp - gd).abs().max() > 1e-3


def test_tuned_shared_rate_beats_nearby_rates(catalog, linear):
    gd2 = fitted(catalog, "gd", linear, seed=2, steps=2, tune_tasks=1000)
    etas = gd2.hyperparameters()["eta"]
    assert len(etas) == 2 and etas[0] == etas[1] > 0
    ep = training_sample(linear, 1000, gen(2), "cpu")  # the tuning tasks: a true minimum there
    loss = lambda p: float(0.5 * ((p - ep.query_y) ** 2).sum(-1).mean())  # noqa: E731
    tuned = loss(predict(gd2, ep))
    for factor in (0.99, 1.01):
        assert tuned < loss(predict(catalog.learners["gd"]({"steps": 2, "eta": etas[0] * factor}), ep))


def test_untuned_gd_refuses_to_predict(catalog, linear):
    with pytest.raises(RuntimeError, match="call fit"):
        catalog.learners["gd"]().predict(sample64(linear, 4))
