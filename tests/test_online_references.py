"""Per-position references on sequences: online ridge against a direct solve at every position,
its least-squares limit, online GD's closed-form rate, Monte-Carlo checks of closed forms, and
K-step online GD and GD++ against explicit per-task, per-position loops."""

from __future__ import annotations

import pytest
import torch

from iclbench.metrics import sensitivities, task_losses
from iclbench.positions import (position_curve, position_episode, position_predictions, position_sensitivities,
                                 sensitivity_positions, states_of)
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.learners.least_squares import LeastSquares
from iclbench_plugins.learners.online_references import OnlineGD, OnlineGDPP, OnlineRidge, transition_moments


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
    from iclbench_plugins.tasks.linear_regression import LinearRegression
    ep = LinearRegression().sample(4, generator=gen(), device="cpu")
    with pytest.raises(ValueError, match="sequence episode"):
        OnlineGD(eta=1.0).predict(ep)
    for learner in (OnlineGD(eta=1.0, steps=2), OnlineGDPP(eta=1.0, gamma=0.1)):
        with pytest.raises(ValueError, match="sequence episode"):
            learner.predict(ep)


@pytest.fixture(scope="module")
def small():
    return LinearDynamics(D=3, T=6).sample(3, generator=gen(5), device="cpu").to(dtype=torch.float64)


def explicit_loop(episode, K, eta, gamma=None):
    """Per task and position, the regression's data as tokens: inputs x_i = s_{i-1} (s_0 = 0),
    targets y_i = s_i (i <= t), query s_t. gamma None: K steps of Phi <- Phi - eta grad of
    1/2 sum ||Phi x_i - y_i||^2 from Phi = 0, prediction Phi s_t. Else GD++: each step transforms
    inputs and query by I - gamma X^T X, then takes a GD step that turns the targets into
    residuals, the query gaining the step's prediction."""
    s = states_of(episode)  # (B, T+1, D)
    B, T, D = s.shape[0], s.shape[1] - 1, s.shape[2]
    out = torch.zeros(B, T, D, dtype=s.dtype)
    for b in range(B):
        for t in range(1, T + 1):
            X = torch.cat([torch.zeros(1, D, dtype=s.dtype), s[b, :t - 1]])  # (t, D) rows x_i; s[:, 0] is s_1
            Y, q = s[b, :t].clone(), s[b, t - 1].clone()  # (t, D) rows y_i = s_i, query s_t (D,)
            Phi, pred = torch.zeros(D, D, dtype=s.dtype), torch.zeros(D, dtype=s.dtype)
            for _ in range(K):
                if gamma is None:
                    Phi = Phi - eta * (X @ Phi.T - Y).T @ X  # grad = sum_i (Phi x_i - y_i) x_i^T
                    continue
                A = torch.eye(D, dtype=s.dtype) - gamma * X.T @ X
                X, q = X @ A.T, A @ q
                R = Y.T @ X  # sum_i y_i x_i^T
                pred = pred + eta * R @ q
                Y = Y - eta * X @ R.T
            out[b, t - 1] = Phi @ q if gamma is None else pred
    return out


def test_one_step_is_unchanged(episode):
    task = LinearDynamics(D=4, T=12)
    learners = OnlineGD(), OnlineGD(steps=1)
    for gd in learners:
        gd.fit(task, generator=gen(1), device="cpu")
    ep = task.sample(2048, generator=gen(1), device="cpu").to(dtype=torch.float64)
    a, target = OnlineGD.step(ep)
    assert learners[0].eta == learners[1].eta == float((a * target).sum() / a.pow(2).sum())
    eta = learners[0].eta
    assert all(torch.equal(gd.predict_positions(episode), eta * OnlineGD.step(episode)[0]) for gd in learners)


@pytest.mark.parametrize("K", [1, 2, 3, 5])
def test_k_steps_are_k_gradient_steps_at_every_position(small, K):
    pred = OnlineGD(eta=0.2, steps=K).predict_positions(small)  # (B, T, D)
    assert torch.allclose(pred, explicit_loop(small, K, 0.2), atol=1e-10, rtol=0)


@pytest.mark.parametrize("K,gamma", [(1, 0.1), (2, 0.05), (3, 0.2)])
def test_gdpp_is_the_token_recursion(small, K, gamma):
    pred = OnlineGDPP(eta=0.2, gamma=gamma, steps=K).predict_positions(small)
    direct = explicit_loop(small, K, 0.2, gamma)
    assert torch.allclose(pred, direct, atol=1e-10, rtol=0)
    assert not torch.allclose(direct, explicit_loop(small, K, 0.2), atol=1e-3)  # the transform matters


@pytest.mark.parametrize("K", [1, 3])
def test_gdpp_without_transform_is_gd(episode, K):
    gd = OnlineGD(eta=0.05, steps=K).predict_positions(episode)
    assert torch.allclose(OnlineGDPP(eta=0.05, gamma=0.0, steps=K).predict_positions(episode), gd, atol=1e-12, rtol=0)


def test_many_steps_converge_to_online_least_squares(episode):
    """With eta below 2 / lambda_max everywhere, GD converges at rate (1 - eta lambda_min)^K to
    M_t C_t^{-1} s_t wherever C_t is invertible."""
    C, M, q, _ = transition_moments(episode)  # (B, T, D, D), (B, T, D)
    lam = torch.linalg.eigvalsh(C)  # (B, T, D) ascending
    eta, K = 1.0 / float(lam.max()), 20000
    converged = (1 - eta * lam[..., 0]) ** K < 1e-12  # (B, T)
    assert converged[:, 4:].float().mean() > 0.75 and not converged[:, :4].any()  # before D transitions: singular
    direct = (M[converged] @ torch.linalg.solve(C[converged], q[converged][..., None]))[..., 0]  # (n, D)
    pred = OnlineGD(eta=eta, steps=K).predict_positions(episode)[converged]
    assert torch.allclose(pred, direct, atol=1e-8, rtol=0)


def test_tuned_steps_on_dynamics():
    """Tuned on training sequences: more GD steps lower the loss averaged over positions, and
    GD++ (its grid contains gamma = 0, i.e. GD-K) is no worse than GD with as many steps."""
    task = LinearDynamics(D=6, T=30)
    ep = task.sample(2048, generator=gen(7), device="cpu")
    train = task.sample(512, generator=gen(6), device="cpu").to(dtype=torch.float64)
    learners = {"gd1": OnlineGD(tune_tasks=512), "gd2": OnlineGD(steps=2, tune_tasks=512),
                "gd3": OnlineGD(steps=3, tune_tasks=512), "pp2": OnlineGDPP(steps=2, tune_tasks=512),
                "pp3": OnlineGDPP(steps=3, tune_tasks=512)}
    mean = {}
    for key, learner in learners.items():
        learner.fit(task, generator=gen(6), device="cpu")
        mean[key] = position_curve(learner, ep, learner.predict)["mean"]
        eta = learner.eta

        def train_loss(scale):
            learner.eta = scale * eta
            return float(task_losses(learner.predict_positions(train), states_of(train)[:, 1:]).mean())

        assert train_loss(1.0) < min(train_loss(0.97), train_loss(1.03))  # a minimum of the training loss
        learner.eta = eta
    assert mean["gd1"] > mean["gd2"] > mean["gd3"]
    assert mean["pp2"] <= mean["gd2"] and mean["pp3"] <= mean["gd3"]


def test_online_gd_sensitivity_at_every_position_is_its_closed_form(episode):
    """d yhat_t / d s_t of eta M_t s_t, s_t also the last transition's target:
    eta [(s_{t-1} . s_t) I + M_t], M_t = sum_{t' <= t} s_t' s_{t'-1}^T."""
    gd = OnlineGD(eta=0.3)
    s = states_of(episode)  # (B, 13, 4)
    positions = sensitivity_positions(12)
    assert positions == [2, 3, 6, 9, 12]
    got = position_sensitivities(gd, episode, lambda learner, ep: sensitivities(learner.predict, ep), positions)
    for t in positions:
        M = torch.einsum("bti,btj->bij", s[:, 1:t], s[:, :t - 1])  # (B, D, D) sum s_t' s_{t'-1}^T
        dot = (s[:, t - 2] * s[:, t - 1]).sum(-1)  # (B,) s_{t-1} . s_t (1-based)
        want = 0.3 * (dot[:, None, None] * torch.eye(4, dtype=s.dtype) + M)  # (B, D, D)
        assert torch.allclose(got[t], want, atol=1e-12, rtol=0), t
