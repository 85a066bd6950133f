"""The Kalman-filter oracle on linear dynamics: exact when fully observed, at its noise floor when
partially observed, and its own error covariance checked against an independent simulation."""

from __future__ import annotations

import pytest
import torch

import iclbench_plugins.learners.kalman as kalman_module
from iclbench.catalog import build_catalog
from iclbench.metrics import task_losses
from iclbench.plugins import make_plugin_manager
from iclbench.positions import position_curve, position_predictions, sequence_episode, states_of
from iclbench_plugins.learners.kalman import KalmanFilter
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.learners.least_squares import LeastSquares
from iclbench_plugins.tasks.linear_regression import LinearRegression


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("active", [None, 3])
def test_fully_observed_prediction_is_W_times_the_state(active):
    """The state is observed exactly, so the posterior mean of s_{t+1} is W s_t from t = 1 on,
    and the error covariance is the process noise alone."""
    sigma = 0.05
    ep = LinearDynamics(D=5, T=20, noise_std=sigma, active=active).sample(64, generator=gen(), device="cpu")
    kf = KalmanFilter()
    pred = kf.predict_positions(ep)  # (B, T, D)
    s = states_of(ep).double()  # (B, T+1, D)
    W = ep.truth["W"].double()
    assert pred.shape == (64, 20, 5) and pred.dtype == torch.float32
    assert torch.allclose(pred.double(), s[:, :-1] @ W.transpose(1, 2), atol=1e-5)
    k = active or 5
    Q = sigma ** 2 * torch.diag(torch.arange(5) < k).double()  # (D, D)
    assert torch.allclose(kf.predicted_covariances(ep), Q.expand(64, 20, 5, 5), atol=1e-9)
    assert torch.equal(kf.predict(ep), pred[:, -1])


def test_partially_observed_reaches_its_noise_floor_far_below_least_squares():
    """obs = 5 of D = 10, sigma = 0.01. Once the state is pinned down (two observations give 10
    equations), the loss sits at the filter's steady state: above the floor 0.5 sigma^2 ||C||_F^2
    (the error if s_t were known exactly), and below twice it (the rest is the unobserved part of
    s_t, never known exactly when obs < D and sigma > 0). Measured: ~1.8 x the floor."""
    sigma = 0.01
    ep = LinearDynamics(D=10, observed=5, noise_std=sigma).sample(1024, generator=gen(1), device="cpu")
    kf, ls = KalmanFilter(), LeastSquares()
    kal = position_curve(kf, ep, kf.predict)
    lsq = position_curve(ls, ep, ls.predict)  # minimum-norm least squares on the observed transitions
    zero = task_losses(torch.zeros_like(ep.query_y)[:, None], states_of(ep)[:, 1:]).double().mean(0)  # (T,)
    k, l = torch.tensor(kal["loss"]), torch.tensor(lsq["loss"])  # (T,) each
    assert bool((k < l).all()) and bool((k < 0.6 * zero).all()) and bool((k[1:] < 0.05 * zero[1:]).all())
    assert float(k[2:].mean()) < 0.01 * float(l[2:].mean())
    floor = 0.5 * sigma ** 2 * float(ep.truth["C"].double().pow(2).sum((1, 2)).mean())
    settled = k[3:]  # t >= 4 = 2 D / obs + 2
    assert float(settled.min()) > floor and float(settled.mean()) < 2 * floor
    predicted = 0.5 * torch.diagonal(kf.predicted_covariances(ep), dim1=-2, dim2=-1).sum(-1).mean(0)  # (T,)
    assert abs(kal["mean"] - float(predicted.mean())) < 2 * kal["mean_ci95"]  # the filter's own forecast


def test_predicted_error_covariance_matches_monte_carlo():
    """One fixed system (D = 6, 4 coordinates moving, 3 observed, sigma = 0.1), 20000 sequences
    simulated here, s_1 ~ U(-1, 1) as in the task: the filter is linear, so its stated error
    covariance C (W P_t W^T + Q) C^T is exact for any s_1 with the prior's second moments."""
    n, T, D, k, sigma = 20000, 16, 6, 4, 0.1
    truth = LinearDynamics(D=D, observed=3, active=k, noise_std=sigma).sample(1, generator=gen(2), device="cpu").truth
    W, C = truth["W"][0].double(), truth["C"][0].double()  # (D, D), (3, D)
    g = gen(3)
    s = torch.zeros(n, D, dtype=torch.float64)
    s[:, :k] = 2 * torch.rand(n, k, generator=g, dtype=torch.float64) - 1
    states = [s]
    for _ in range(T):
        s = s @ W.T
        s[:, :k] += sigma * torch.randn(n, k, generator=g, dtype=torch.float64)
        states.append(s)
    obs = torch.stack(states, 1) @ C.T  # (n, T+1, 3)
    ep = sequence_episode(obs, {name: v.double().expand(n, *v.shape[1:]) for name, v in truth.items()})
    kf = KalmanFilter()
    err = kf.predict_positions(ep) - obs[:, 1:]  # (n, T, 3)
    covs = kf.predicted_covariances(ep)  # (n, T, 3, 3)
    cov = covs[0]  # (T, 3, 3): the same for every sequence
    assert torch.allclose(covs[-1], cov)
    sq = err.pow(2).sum(-1)  # (n, T)
    emp, se = sq.mean(0), sq.std(0) / n ** 0.5  # (T,)
    stated = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)  # (T,)
    assert bool(((emp - stated).abs() < 4 * se).all()), (emp / stated).tolist()
    floor = sigma ** 2 * float(C[:, :k].pow(2).sum())  # the error if s_T were known exactly
    assert floor < float(stated[-1]) < 2 * floor < 0.2 * float(stated[0])  # from the prior down to the noise
    full = torch.einsum("ni,nj->ij", err[:, -1], err[:, -1]) / n  # (3, 3) the whole matrix at t = T
    assert torch.allclose(full, cov[-1], atol=0.05 * float(stated[-1]))


def test_without_truth_it_says_what_is_missing():
    mlp = LinearDynamics(D=4, T=6, teacher="mlp").sample(8, generator=gen(), device="cpu")
    with pytest.raises(ValueError, match="kalman: the episode carries no truth"):
        KalmanFilter().predict(mlp)
    pairs = LinearRegression().sample(8, generator=gen(), device="cpu")
    with pytest.raises(ValueError, match="kalman: needs a sequence episode"):
        KalmanFilter().predict_positions(pairs)
    ep = LinearDynamics(D=4, T=6).sample(8, generator=gen(), device="cpu")
    partial = sequence_episode(states_of(ep), {k: v for k, v in ep.truth.items() if k != "C"})
    with pytest.raises(ValueError, match="kalman: episode.truth lacks C"):
        KalmanFilter().predict(partial)


def test_registers_as_kalman_and_runs_through_the_position_curve():
    pm = make_plugin_manager(entry_points=False)
    pm.register(kalman_module, "kalman")
    assert build_catalog(pm).learners["kalman"] is KalmanFilter
    ep = LinearDynamics(D=4, T=6).sample(8, generator=gen(), device="cpu")
    kf = KalmanFilter(jitter=1e-6)
    assert torch.equal(position_predictions(kf, ep, kf.predict), kf.predict_positions(ep))
