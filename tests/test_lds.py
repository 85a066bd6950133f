"""Linear dynamics tasks: each law checked statistically, and the sequence suites end to end."""

from __future__ import annotations

import pytest
import torch

from iclbench.config import ConfigError
from iclbench.positions import states_of
from iclbench_plugins.tasks.lds import LinearDynamics, haar_orthogonal


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def fitted_transitions(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares W per task from all transitions of (n, T+1, D) states, and the residuals."""
    X, Y = s[:, :-1].double(), s[:, 1:].double()  # (n, T, D)
    W = torch.linalg.lstsq(X, Y).solution.transpose(1, 2)  # (n, D, D): Y ~ X W^T
    return W, Y - X @ W.transpose(1, 2)


def test_haar_orthogonal_is_orthogonal_with_zero_mean_trace():
    Q = haar_orthogonal(4000, 5, gen(), "cpu")
    assert torch.allclose(Q @ Q.transpose(1, 2), torch.eye(5).expand(4000, 5, 5), atol=1e-5)
    tr = torch.diagonal(Q, dim1=-2, dim2=-1).sum(-1)
    assert abs(float(tr.mean())) < 3 * float(tr.std()) / 4000 ** 0.5  # Haar: E tr Q = 0
    assert float(tr.var()) == pytest.approx(1.0, abs=0.1)  # and Var tr Q = 1


def test_default_law_initial_state_orthogonal_transition_and_noise():
    task = LinearDynamics()
    ep = task.sample(2000, generator=gen(), device="cpu")
    s = states_of(ep)  # (n, 51, 10)
    assert s.shape == (2000, 51, 10) and ep.n_context == 49
    first = s[:, 0]
    assert float(first.abs().max()) <= 1.0 and float(first.var()) == pytest.approx(1 / 3, rel=0.03)  # U(-1, 1)
    W, res = fitted_transitions(s)
    # residual variance of a least-squares fit with 10 parameters per output on 50 transitions: sigma^2 (50 - 10) / 50
    assert float(res.pow(2).mean()) == pytest.approx(0.01 ** 2 * 40 / 50, rel=0.05)


def test_noiseless_dynamics_are_orthogonal_keep_the_norm_and_radius_scales_it():
    s = LinearDynamics(noise_std=0.0).states(100, generator=gen(1), device="cpu")[0]
    W, _ = fitted_transitions(s)
    assert torch.allclose(W @ W.transpose(1, 2), torch.eye(10, dtype=torch.float64).expand(100, 10, 10), atol=1e-4)
    norms = s.norm(dim=-1)  # (n, T+1)
    assert torch.allclose(norms, norms[:, :1].expand_as(norms), rtol=1e-4)
    shrink = LinearDynamics(noise_std=0.0, spectral_radius=0.9, T=10).states(100, generator=gen(1), device="cpu")[0].norm(dim=-1)
    assert torch.allclose(shrink[:, -1] / shrink[:, 0], torch.full((100,), 0.9 ** 10), rtol=1e-4)


def test_clip_bounds_an_expanding_system():
    s = LinearDynamics(spectral_radius=1.5, clip=10.0).states(50, generator=gen(2), device="cpu")[0]
    assert float(s.abs().max()) == pytest.approx(10.0)
    assert float(LinearDynamics(spectral_radius=1.5, clip=None).states(50, generator=gen(2), device="cpu")[0].abs().max()) > 10


def test_partially_observed_sequences_are_projections_of_hidden_states():
    task = LinearDynamics(observed=3, noise_std=0.0)
    obs = states_of(task.sample(200, generator=gen(3), device="cpu"))  # (n, 51, 3)
    hidden = LinearDynamics(noise_std=0.0).states(200, generator=gen(3), device="cpu")[0]  # the same draws, unprojected
    C = torch.linalg.lstsq(hidden.double(), obs.double()).solution  # (n, D, 3): obs = hidden C
    assert obs.shape == (200, 51, 3) and torch.allclose(hidden.double() @ C, obs.double(), atol=1e-4)
    assert float(C.var()) == pytest.approx(0.25, rel=0.1)  # C ~ 0.5 N(0, 1)


def test_mlp_teacher_keeps_the_state_norm_near_one():
    """s_t+1 = W f(s_t) / |f(s_t)| (+ noise): from step 2 on, states lie on the unit sphere."""
    s = LinearDynamics(teacher="mlp", noise_std=0.0).states(100, generator=gen(4), device="cpu")[0]
    assert torch.allclose(s[:, 1:].norm(dim=-1), torch.ones(100, 50), atol=1e-5)
    W, res = fitted_transitions(s)
    assert float(res.pow(2).mean()) > 1e-4  # not a linear system


def test_truth_is_the_generating_system():
    """Episode.truth holds W and C exactly: noiseless states obey o_t+1 = C W s_t with o_t = C s_t."""
    task = LinearDynamics(observed=4, noise_std=0.0, T=6)
    ep = task.sample(50, generator=gen(5), device="cpu")
    W, C = ep.truth["W"], ep.truth["C"]  # (n, 10, 10), (n, 4, 10)
    hidden = LinearDynamics(noise_std=0.0, T=6).states(50, generator=gen(5), device="cpu")[0]  # (n, 7, 10)
    assert torch.allclose(states_of(ep), hidden @ C.transpose(1, 2), atol=1e-5)
    assert torch.allclose(hidden[:, 1:], hidden[:, :-1] @ W.transpose(1, 2), atol=1e-5)
    assert float(ep.truth["noise_std"][0]) == 0.0 and ep.slice(0, 7).truth["W"].shape == (7, 10, 10)
    assert torch.equal(LinearDynamics(T=6).sample(3, generator=gen(), device="cpu").truth["C"], torch.eye(10).expand(3, 10, 10))
    assert LinearDynamics(teacher="mlp", T=6).sample(3, generator=gen(), device="cpu").truth is None  # no linear model


def test_active_dimensions_move_and_the_rest_stay_zero():
    task = LinearDynamics(active=4, noise_std=0.0)
    s = states_of(task.sample(100, generator=gen(6), device="cpu"))  # (n, 51, 10)
    assert float(s[..., 4:].abs().max()) == 0.0 and float(s[..., :4].abs().min(dim=1).values.mean()) > 0
    W, _ = fitted_transitions(s[..., :4])
    assert torch.allclose(W @ W.transpose(1, 2), torch.eye(4, dtype=torch.float64).expand(100, 4, 4), atol=1e-4)
    with pytest.raises(ConfigError, match="active"):
        LinearDynamics(active=11)


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="observed"):
        LinearDynamics(observed=0)
    with pytest.raises(ConfigError, match="teacher"):
        LinearDynamics(teacher="rnn")


def test_lds_suite_records_the_loss_at_every_position(tmp_path):
    from iclbench.catalog import build_catalog
    from iclbench.plugins import make_plugin_manager
    from iclbench.runner import Evaluation, LearnerSpec, Plan
    from iclbench.store import RESULTS_FILE, ResultStore, read_records

    catalog = build_catalog(make_plugin_manager())
    suite = catalog.suites.load("lds", catalog)
    plan = Plan([LearnerSpec("zero", {}), LearnerSpec("least-squares", {})], suite, [0], n_tasks=300)
    Evaluation(catalog, plan, ResultStore(tmp_path)).run()
    recs = {r["label"]: r for r in read_records(tmp_path / RESULTS_FILE)}
    ls, zero = recs["least-squares"], recs["zero"]
    assert len(ls["position_curve"]["loss"]) == 50
    assert ls["position_curve"]["loss"][0] == pytest.approx(zero["position_curve"]["loss"][0])  # nothing seen yet
    assert max(ls["position_curve"]["loss"][15:]) < 2e-3 < 1 < min(zero["position_curve"]["loss"])
    assert ls["metrics"]["position_loss"] == pytest.approx(sum(ls["position_curve"]["loss"]) / 50)
    assert ls["metrics"]["loss"] == pytest.approx(ls["position_curve"]["loss"][-1], rel=1e-4)  # the last position
    from iclbench import board as leaderboard
    written = leaderboard.render(list(recs.values()), tmp_path / "board")
    assert tmp_path / "board" / "lds-lds-loss-vs-position.png" in written
    ridge = LearnerSpec("online-ridge", {"lam": 1e-3})
    aligned = Plan([LearnerSpec("online-gd", {}), ridge], suite, [0], n_tasks=300, align_to=ridge)
    Evaluation(catalog, aligned, ResultStore(tmp_path / "aligned")).run()
    paired = {r["label"]: r["metrics"] for r in read_records(tmp_path / "aligned" / RESULTS_FILE)}
    gd, own = paired["online-gd"], paired["online-ridge[lam=0.001]"]
    assert own["position_loss_diff"] == 0.0 and own["position_pred_diff"] == 0.0  # the reference against itself
    curve = next(r for r in read_records(tmp_path / "aligned" / RESULTS_FILE) if r["label"] == "online-gd")["position_curve"]
    assert len(curve["pred_diff"]) == 50 and gd["position_pred_diff"] == pytest.approx(sum(curve["pred_diff"]) / 50)
    assert curve["pred_diff"][0] == 0.0 < curve["pred_diff"][1]  # at t = 1 both predict 0 (no transition seen)
    assert gd["position_loss_diff"] == pytest.approx(gd["position_loss"] - own["position_loss"], rel=1e-9)
    assert gd["position_loss_diff"] - gd["position_loss_diff_ci95"] > 0  # one GD step is worse than ridge
    sens = next(r for r in read_records(tmp_path / "aligned" / RESULTS_FILE) if r["label"] == "online-gd")["position_sensitivity"]
    assert sens["t"] == [5, 12, 25, 38, 50] and own["position_sens_cos"] == pytest.approx(1, abs=1e-6)
    assert 0.5 < gd["position_sens_cos"] < 0.999 and gd["position_sens_cos"] == pytest.approx(sum(sens["sens_cos"]) / 5)
    drawn = leaderboard.render(read_records(tmp_path / "aligned" / RESULTS_FILE), tmp_path / "aligned-board")
    assert tmp_path / "aligned-board" / "lds-lds-alignment-to-online-ridge_lam_0.001_.png" in drawn
    for name in ("lds-partial", "lds-ood"):
        catalog.suites.load(name, catalog)
