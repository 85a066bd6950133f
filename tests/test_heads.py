"""`softmax-heads` (Fig. 11): per-head eta_h W_{h,KQ} of a softmax Transformer, on hand-set heads."""

from __future__ import annotations

import json
import re

import pytest
import torch

from iclbench.analysis import AnalysisContext
from iclbench.catalog import build_catalog
from iclbench.config import parse_spec
from iclbench.plugins import load_entry_points, make_plugin_manager
from iclbench_plugins.analyses import heads
from iclbench_plugins.analyses.heads import SoftmaxHeads

DX, DY = 4, 1
D = DX + DY


class HandSetContext(AnalysisContext):
    """An analysis context whose learners are built from the catalog and given a prepared model
    instead of being trained."""

    models: dict = {}

    def learner(self, spec: str):
        name, overrides = parse_spec(spec)
        learner = self.catalog.learners[name](overrides)
        if spec not in self.models:
            raise AssertionError(f"the test did not prepare a model for {spec!r}: it would train")
        learner.model = self.models[spec]
        return learner


def context(catalog, tmp_path, models: dict, seed: int = 0) -> HandSetContext:
    ctx = HandSetContext(catalog, None, seed, torch.device("cpu"), 8, tmp_path)
    ctx.models = models
    return ctx


def two_heads(etas: list[float], blocks: list[torch.Tensor]) -> torch.nn.Module:
    """A two-head softmax model whose heads have P W_V y-entry etas[h] and W_K^T W_Q x-block
    blocks[h], set through non-trivial W_K, W_Q, P, W_V (and other entries of W_KQ nonzero)."""
    from iclbench_plugins.transformers.nn.model import InContextTransformer

    model = InContextTransformer(DX, DY, 1, 2, "softmax", False, False, False, None, 1.0).double()
    g = torch.Generator().manual_seed(7)
    attn = model.blocks[0].attn
    with torch.no_grad():
        for h, (eta, block) in enumerate(zip(etas, blocks)):
            kq = torch.randn(D, D, generator=g, dtype=torch.float64)  # (D, D), the y rows and columns stay
            kq[:DX, :DX] = block
            R = torch.randn(D, D, generator=g, dtype=torch.float64) + 3 * torch.eye(D, dtype=torch.float64)  # invertible
            attn.W_K[h] = R
            attn.W_Q[h] = torch.linalg.solve(R.T, kq)  # W_K^T W_Q = R^T R^{-T} kq = kq
            pv = torch.randn(D, D, generator=g, dtype=torch.float64)  # (D, D)
            pv[-1, -1] = eta
            S = torch.randn(D, D, generator=g, dtype=torch.float64) + 3 * torch.eye(D, dtype=torch.float64)  # invertible
            attn.P[h] = S
            attn.W_V[h] = torch.linalg.solve(S, pv)  # P W_V = pv (W_V P would not be)
    return model


def block(seed: int) -> torch.Tensor:
    return torch.randn(DX, DX, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)  # (dx, dx)


def test_sign_reversed_off_diagonals_cancel_in_the_sum(catalog, tmp_path):
    eta1, eta2 = 0.7, -0.4
    m1 = eta1 * block(1)  # (dx, dx): head 1's eta W_KQ
    diag = torch.diag(m1.diagonal())
    m2 = diag - (m1 - diag)  # same diagonal, off-diagonal negated
    spec = "softmax-tf[heads=2]"
    ctx = context(catalog, tmp_path, {spec: two_heads([eta1, eta2], [m1 / eta1, m2 / eta2])})
    res = SoftmaxHeads().run(ctx)
    assert res["eta"] == pytest.approx([eta1, eta2], abs=1e-12)
    assert res["offdiag_cosine"] == pytest.approx(-1.0, abs=1e-6)
    assert res["sum_offdiag_ratio"] == pytest.approx(0.0, abs=1e-6)
    d = float(m1.diagonal().mean())
    assert res["diag_mean"]["heads"] == pytest.approx([d, d], abs=1e-12)
    assert res["diag_mean"]["sum"] == pytest.approx(2 * d, abs=1e-12)
    torch.testing.assert_close(torch.tensor(res["matrices"][1], dtype=torch.float64), m2, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.tensor(res["sum_matrix"], dtype=torch.float64), 2 * diag, rtol=0, atol=1e-10)
    assert res["learner"] == spec and res["heads"] == 2
    json.dumps(res, allow_nan=False)  # plain JSON numbers and lists


def test_identical_heads_double_in_the_sum(catalog, tmp_path):
    b, eta = block(2), -1.3
    ctx = context(catalog, tmp_path, {"softmax-tf[heads=2]": two_heads([eta, eta], [b, b])})
    res = SoftmaxHeads().run(ctx)
    assert res["eta"] == pytest.approx([eta, eta], abs=1e-12)
    assert res["offdiag_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert res["sum_offdiag_ratio"] == pytest.approx(2.0, abs=1e-6)
    assert res["diag_mean"]["sum"] == pytest.approx(2 * eta * float(b.diagonal().mean()), abs=1e-12)


@pytest.mark.parametrize("spec", ["softmax-tf", "lsa[heads=2]", 'softmax-tf[heads=2,attention=["linear","softmax"],layers=2]'])
def test_refuses_one_head_or_linear_attention_naming_the_learner(catalog, tmp_path, spec):
    name, overrides = parse_spec(spec)
    label = catalog.learners[name](overrides).label
    with pytest.raises(ValueError, match=r"softmax attention with at least 2 heads.*" + re.escape(repr(label))):
        SoftmaxHeads(learner=spec).run(context(catalog, tmp_path, {}))  # refused before any training


def test_figure_is_written_per_seed(catalog, tmp_path, monkeypatch):
    titles = []
    real_save = heads.save
    monkeypatch.setattr(heads, "save", lambda fig, path, **kw: (titles.append([a.get_title() for a in fig.axes]),
                                                                real_save(fig, path, **kw))[1])
    model = two_heads([0.5, 0.5], [block(3), -block(3)])
    res = SoftmaxHeads().run(context(catalog, tmp_path, {"softmax-tf[heads=2]": model}, seed=3))
    path = tmp_path / "softmax-heads-seed3.png"
    assert res["figure"] == str(path) and path.stat().st_size > 1000
    assert titles[0][:3] == ["η₁ W₁,KQ", "η₂ W₂,KQ", "sum"]


def test_the_plugin_registers_the_analysis():
    pm = make_plugin_manager(entry_points=False)
    pm.add(heads, "heads", "tests")
    load_entry_points(pm)  # skips the `heads` entry point where pyproject declares one
    assert build_catalog(pm).analyses["softmax-heads"] is SoftmaxHeads
