"""The compressed-algorithm analysis: each family recovers a model known to lie in it (one online
GD step, K steps, exactly block-scalar weights), from a perturbed start where the fit is
iterative, and the analysis end to end on a constructed and on a briefly trained model."""

from __future__ import annotations

import json

import pytest
import torch

from iclbench.analysis import AnalysisContext
from iclbench.catalog import build_catalog
from iclbench.plugins import make_plugin_manager
from iclbench.positions import states_of
from iclbench_plugins.analyses.compressed import (Compressed, agreement, blocks_forward, extract_blocks, fit_blocks,
                                         fit_polynomial)
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.learners.online_references import OnlineGD
from iclbench_plugins.transformers.sequence import SequenceTransformerLearner, set_online_weights

ETA = 0.37


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def episode(seed, n=128, D=4, T=15):
    return LinearDynamics(D=D, T=T).sample(n, generator=gen(seed), device="cpu").to(dtype=torch.float64)


def online_gd_model(D=4, eta=ETA):
    learner = SequenceTransformerLearner()
    learner.model = learner.build_model(D).double()
    set_online_weights(learner.model, eta=eta)
    return learner


def test_polynomial_recovers_one_gd_step():
    learner, fit, held_out = online_gd_model(), episode(0), episode(1)
    params, predict = fit_polynomial(fit, learner.predict_positions(fit), degree=3)
    assert params["eta"] == pytest.approx(ETA, rel=1e-10)
    assert params["c"][0] == 1.0
    assert all(abs(c) * params["nu"] ** j < 1e-9 for j, c in enumerate(params["c"][1:], 1))  # c_j C^j ~ 0
    assert agreement(predict(held_out), learner.predict_positions(held_out))["rel_mse"] < 1e-20


def test_polynomial_recovers_k_gd_steps():
    """Three GD steps from 0 are M eta (3 I - 3 eta C + eta^2 C^2) s."""
    fit, eta = episode(2), 0.05
    params, _ = fit_polynomial(fit, OnlineGD(eta=eta, steps=3).predict_positions(fit), degree=3)
    expected = [3 * eta, -3 * eta ** 2, eta ** 3, 0.0]
    assert all(abs(a - e) < 1e-9 * abs(params["nu"]) ** -j for j, (a, e) in enumerate(zip(params["a"], expected)))
    assert params["a"][1] == pytest.approx(expected[1], rel=1e-7)


def block_scalar_model(kq, pv, D):
    """A linear seq-tf whose per-head W_K^T W_Q and P W_V are exactly kq (x) I, pv (x) I
    (W_K = I, P = I per head of size 3D)."""
    L, H = kq.shape[:2]
    learner = SequenceTransformerLearner(layers=L, heads=H, key_dim=3 * D)
    learner.model = model = learner.build_model(D).double()
    eye = torch.eye(D, dtype=torch.float64)
    with torch.no_grad():
        for layer, kq_l, pv_l in zip(model.attn, kq, pv):
            layer.W_Q.weight.copy_(torch.cat([torch.kron(k, eye) for k in kq_l]))  # (H*3D, 3D)
            layer.W_K.weight.copy_(torch.eye(3 * D, dtype=torch.float64).repeat(H, 1))
            layer.W_V.weight.copy_(torch.cat([torch.kron(p, eye) for p in pv_l]))
            layer.P.weight.copy_(torch.eye(3 * D, dtype=torch.float64).repeat(1, H))  # (3D, H*3D)
    return learner


def test_blocks_are_the_model_when_its_weights_are_block_scalar():
    g = gen(3)
    kq, pv = (0.3 * torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))  # 2 layers, 2 heads
    learner, ep = block_scalar_model(kq, pv, 4), episode(4, n=32)
    k, p = extract_blocks(learner.model)
    assert torch.allclose(k, kq, atol=1e-14) and torch.allclose(p, pv, atol=1e-14)
    s = states_of(ep)[:, :-1]
    assert torch.allclose(blocks_forward(k, p, s), learner.predict_positions(ep), atol=1e-12, rtol=0)


def test_blocks_fit_recovers_one_gd_step_from_a_perturbed_start():
    learner, fit, held_out = online_gd_model(), episode(5), episode(6)
    kq0, pv0 = extract_blocks(learner.model)  # the reference's extraction: exact here
    assert kq0[0, 0, 2, 1] == 1.0 and pv0[0, 0, 0, 1] == pytest.approx(ETA) and kq0.abs().sum() == 1.0
    g = gen(7)
    start = [x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64) for x in (kq0, pv0)]
    s_fit = states_of(fit)[:, :-1]
    assert agreement(blocks_forward(*start, s_fit), learner.predict_positions(fit))["rel_mse"] > 0.1
    kq, pv = fit_blocks(s_fit, learner.predict_positions(fit), *start)
    assert agreement(blocks_forward(kq, pv, states_of(held_out)[:, :-1]),
                     learner.predict_positions(held_out))["rel_mse"] < 1e-12
    # one layer: only products pv[0, j] kq[i, k], j, i, k in the (s_t, s_t-1) blocks, are identifiable
    effective = torch.einsum("j,ik->jik", pv[0, 0, 0, 1:], kq[0, 0, 1:, 1:])  # (2, 2, 2)
    expected = torch.zeros(2, 2, 2, dtype=torch.float64)
    expected[0, 1, 0] = ETA  # value s_t', score s_t'-1 . s_t
    assert torch.allclose(effective, expected, atol=1e-7)


class ConstructedContext(AnalysisContext):
    """Hands out the online-GD model for seq-tf specs instead of training one."""

    def learner(self, spec):
        return online_gd_model(D=10, eta=0.03) if spec.startswith("seq-tf") else super().learner(spec)


@pytest.fixture(scope="module")
def lds_suite():
    catalog = build_catalog(make_plugin_manager())
    return catalog, catalog.suites.load("lds", catalog)


def test_analysis_on_a_constructed_model(lds_suite, tmp_path):
    ctx = ConstructedContext(*lds_suite, 0, torch.device("cpu"), 128, tmp_path)
    out = Compressed(fit_tasks=128, reference="online-ridge[tune_tasks=256]").run(ctx)
    json.dumps(out)
    poly, blocks = out["families"]["polynomial"], out["families"]["blocks"]
    assert poly["parameters"]["eta"] == pytest.approx(0.03, rel=1e-9)
    for fam in (poly, blocks, blocks["extracted"]):
        assert fam["loss"] == pytest.approx(out["loss"]["model"], rel=1e-9)
        assert fam["rel_mse"] < 1e-18 and fam["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert out["loss"]["reference"] < out["loss"]["model"]  # online ridge beats one GD step on lds
    assert len(out["curves"]["blocks"]) == len(out["curves"]["t"]) == 50
    assert [p.name for p in tmp_path.glob("compressed-*-seed0.png")] == [out["figure"].rsplit("/", 1)[-1]]


def test_analysis_on_a_trained_model(lds_suite, tmp_path):
    ctx = AnalysisContext(*lds_suite, 0, torch.device("cpu"), 128, tmp_path)
    spec = ("seq-tf[train.steps=30,train.batch_size=64,train.eval_every=10,train.eval_tasks=64,"
            "train.checkpoint_every=10]")
    out = Compressed(learner=spec, fit_tasks=128, max_iter=50, reference="online-ridge[tune_tasks=256]").run(ctx)
    json.dumps(out)
    blocks = out["families"]["blocks"]
    assert blocks["fit"]["rel_mse"] < blocks["extracted"]["fit"]["rel_mse"]  # refines the reference's extraction
    assert all(0 <= out["families"][f]["fit"]["rel_mse"] < 1 for f in ("polynomial", "blocks"))
    assert len(blocks["parameters"]["kq"]) == 1 and len(out["families"]["polynomial"]["parameters"]["a"]) == 4
