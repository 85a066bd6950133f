"""Per-position references on sequences: online ridge against a direct solve at every position,
its least-squares limit, online GD's closed-form rate, and Monte-Carlo checks of closed forms."""

from __future__ import annotations

import pytest
import torch

from iclbench.metrics import task_losses
from iclbench.positions import position_curve, position_episode, position_predictions, states_of
from iclbench_plugins.lds import LinearDynamics
from iclbench_plugins.least_squares import LeastSquares
from iclbench_plugins.online_references import OnlineGD, OnlineRidge


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def episode():
    return LinearDynamics(D=4, T=12).sample(256, generator=gen(), device="cpu").to(dtype=torch.float64)


@pytest.mark.parametrize("lam", [0.01, 1.0, 10.0])
def test_online_ridge_is_ridge_on_the_transitions_seen(episode, lam):
    pred = OnlineRidge(lam=lam).predict_positions(episode)  # (B, T, D)
    for t in (1, 2, 5, 12):
        p = position_episode(episode, t)  # transitions 1..t-1, query s_t
        X, Y = p.context_x, p.context_y  # (B, t-1, D); one zero pair at t = 1
        A = X.transpose(1, 2) @ X + lam * torch.eye(4, dtype=X.dtype)  # (B, D, D)
        direct = torch.einsum("bnd,bne,be->bd", Y, X, torch.linalg.solve(A, p.query_x[..., None])[..., 0])
        assert torch.allclose(pred[:, t - 1], direct, atol=1e-10, rtol=1e-8)


def test_online_ridge_tends_to_online_least_squares(episode):
    ridge = OnlineRidge(lam=1e-9).predict_positions(episode)
    ls = LeastSquares()
    exact = position_predictions(ls, episode, ls.predict)  # (B, T, D) minimum-norm least squares per position
    assert torch.allclose(ridge[:, 5:], exact[:, 5:], atol=1e-5)  # from 5 transitions on, the fit is unique


def test_online_gd_rate_is_the_training_minimiser():
    task = LinearDynamics(D=4, T=12)
    gd = OnlineGD()
    gd.fit(task, generator=gen(1), device="cpu")
    ep = task.sample(2048, generator=gen(1), device="cpu").to(dtype=torch.float64)
    a, target = OnlineGD.step(ep)  # the unit-rate step at every position

    def loss(eta):
        return float(task_losses(eta * a, target).mean())

    assert gd.eta > 0 and loss(gd.eta) < min(loss(0.95 * gd.eta), loss(1.05 * gd.eta))
    p = position_episode(ep, 7)  # one GD step on the summed loss from Phi = 0, at position 7
    step = torch.einsum("bnd,bne,be->bd", p.context_y, p.context_x, p.query_x)
    assert torch.allclose(a[:, 6], step, atol=1e-12)


def test_closed_forms_against_monte_carlo():
    """Noiseless orthogonal dynamics with s_1 ~ U(-1, 1)^D: before any transition every
    reference predicts 0, so the loss at t = 1 is E |s_2|^2 / 2 = D / 6; after D transitions
    online least squares is exact."""
    task = LinearDynamics(D=4, T=8, noise_std=0.0)
    ep = task.sample(20000, generator=gen(2), device="cpu").to(dtype=torch.float64)
    ridge = OnlineRidge(lam=1e-8)
    curve = position_curve(ridge, ep, ridge.predict)
    assert abs(curve["loss"][0] - 4 / 6) < 2 * curve["ci95"][0]
    assert max(curve["loss"][4:]) < 1e-8 < min(curve["loss"][:4])
    assert states_of(ep).shape == (20000, 9, 4)


def test_tuned_online_ridge_is_no_worse_than_least_squares_on_noisy_dynamics():
    task = LinearDynamics(D=4, T=12, noise_std=0.1)
    ridge = OnlineRidge()
    ridge.fit(task, generator=gen(3), device="cpu")
    ep = task.sample(4096, generator=gen(4), device="cpu")
    tuned = position_curve(ridge, ep, ridge.predict)["mean"]
    tiny = OnlineRidge(lam=1e-6)
    assert ridge.lam > 1e-6 and tuned < position_curve(tiny, ep, tiny.predict)["mean"]


def test_online_references_refuse_plain_pairs():
    from iclbench_plugins.linear_regression import LinearRegression
    ep = LinearRegression().sample(4, generator=gen(), device="cpu")
    with pytest.raises(ValueError, match="sequence episode"):
        OnlineGD(eta=1.0).predict(ep)
