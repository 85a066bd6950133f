"""Linear probes: targets against an independent computation, R^2 on known cases, and the
analysis end to end on a trained sequence model."""

from __future__ import annotations

import torch

from iclbench.analysis import AnalysisContext
from iclbench.catalog import build_catalog
from iclbench.plugins import make_plugin_manager
from iclbench.positions import states_of
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.transformers.nn.mesa_layer import preconditioned_queries_sherman_morrison
from iclbench_plugins.analyses.probes import Probes, fit_probe, probe_targets, r_squared


def test_preconditioned_target_is_the_mesa_layers_preconditioned_query():
    s = states_of(LinearDynamics(D=3, T=9).sample(32, generator=torch.Generator().manual_seed(0), device="cpu")).double()
    targets = probe_targets(s, lam=0.5)
    q = s[:, :-1][:, None]  # (B, 1, T, D) s_t
    k = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-2]], dim=1)[:, None]  # s_{t-1}
    pre = preconditioned_queries_sherman_morrison(q, k, torch.tensor([0.5], dtype=torch.float64))[:, 0]
    assert torch.allclose(targets["preconditioned"], pre, atol=1e-10)
    assert torch.equal(targets["previous"][:, 4], s[:, 3]) and torch.equal(targets["next"][:, 4], s[:, 5])
    assert torch.equal(targets["previous"][:, 0], torch.zeros_like(s[:, 0]))


def test_r_squared_and_least_squares_probe():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(50, 8, 6, generator=g, dtype=torch.float64)
    A = torch.randn(6, 3, generator=g, dtype=torch.float64)
    Y = X @ A
    assert torch.allclose(fit_probe(X, Y), A, atol=1e-10) and r_squared(X @ fit_probe(X, Y), Y) == 1.0
    padded = torch.cat([torch.zeros_like(X), X], dim=-1)  # constant channels, as in constructed tokens
    assert r_squared(padded @ fit_probe(padded, Y), Y) > 1 - 1e-12
    assert abs(r_squared(torch.zeros_like(Y) + Y.reshape(-1, 3).mean(0), Y)) < 1e-12  # the mean predictor: 0
    noisy = Y + torch.randn(Y.shape, generator=g, dtype=torch.float64) * Y.std()  # noise variance = signal variance
    assert abs(r_squared(Y, noisy) - 0.5) < 0.05


def test_probe_analysis_on_a_trained_model(tmp_path):
    catalog = build_catalog(make_plugin_manager())
    suite = catalog.suites.load("lds", catalog)
    ctx = AnalysisContext(catalog, suite, 0, torch.device("cpu"), 256, tmp_path)
    spec = "seq-tf[layers=2,train.steps=20,train.batch_size=64,train.eval_every=10,train.eval_tasks=64,train.checkpoint_every=10]"
    out = Probes(learner=spec, fit_tasks=256).run(ctx)
    r2 = out["r2"]
    assert set(r2) == {"next", "previous", "preconditioned"} and all(len(v) == 3 for v in r2.values())
    assert r2["previous"][0] > 0.999  # the constructed token holds s_{t-1}
    assert r2["next"][0] < r2["previous"][0]  # s_{t+1} is no linear function of (s_t, s_{t-1}) across tasks
    assert [p.name for p in tmp_path.glob("probes-*-seed0.png")] == [out["figure"].rsplit("/", 1)[-1]]
