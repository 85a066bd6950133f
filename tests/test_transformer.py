"""Transformer learners: GD constructions, short training, cache, resume, analyses."""

from __future__ import annotations

import warnings

import pytest
import torch

from iclbench.analysis import AnalysisContext
from iclbench.checkpoints import Checkpoint, cache_dir
from iclbench.config import ConfigError
from iclbench.metrics import sensitivities, task_losses
from iclbench.training import TrainConfig, meta_train

QUICK = {"steps": 150, "batch_size": 256, "lr": 0.01, "eval_every": 50, "eval_tasks": 512, "checkpoint_every": 50}


@pytest.fixture(scope="module")
def task(linear):
    return linear


def episode(task, n=300, seed=7):
    return task.sample(n, generator=torch.Generator().manual_seed(seed), device="cpu").to(dtype=torch.float64)


def fitted(catalog, task, spec: str, overrides: dict, seed: int = 1):
    learner = catalog.learners[spec](overrides)
    learner.fit(task, generator=torch.Generator().manual_seed(seed), device="cpu")
    return learner


@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("pair", [("gd", "lsa-gd"), ("gd++", "lsa-gd++")])
def test_construction_equals_gd(catalog, task, K, pair):
    cfg = {"steps": K, "per_step": True, "tune_tasks": 1000}
    ref, lsa = (fitted(catalog, task, name, cfg) for name in pair)
    ep = episode(task)
    with torch.no_grad():
        assert torch.allclose(lsa.predict(ep), ref.predict(ep), atol=1e-10, rtol=0)
    assert torch.allclose(sensitivities(lsa.predict, ep), sensitivities(ref.predict, ep), atol=1e-9, rtol=0)


def test_construction_with_given_rates_any_context_size(catalog):
    """Attention averages over the keys, so the construction is GD for every N, not only the trained one."""
    task = catalog.tasks["linear-regression"](N=25, d=4, dy=2)
    cfg = {"steps": 2, "eta": [3.0, 1.5], "gamma": [0.5, 0.25]}
    ep = episode(task)
    with torch.no_grad():
        assert torch.allclose(catalog.learners["lsa-gd++"](cfg).predict(ep), catalog.learners["gd++"](cfg).predict(ep), atol=1e-10)


def test_short_training_beats_zero(catalog, task):
    lsa = fitted(catalog, task, "lsa", {"train": QUICK})
    ep = episode(task, 2000, seed=11).to(dtype=torch.float32)
    with torch.no_grad():
        loss = float(task_losses(lsa.predict(ep), ep.query_y).mean())
    zero = float(task_losses(torch.zeros_like(ep.query_y), ep.query_y).mean())
    assert loss < 0.75 * zero
    curve = lsa.fit_info()["curve"]
    assert [row["step"] for row in curve] == [50, 100, 150]
    assert curve[-1]["eval_loss"] < curve[0]["eval_loss"]


def test_cache_reuses_trained_weights(catalog, task, tmp_path):
    with cache_dir(tmp_path):
        first = fitted(catalog, task, "lsa", {"train": QUICK})
        second = fitted(catalog, task, "lsa", {"train": QUICK})
        other_seed = fitted(catalog, task, "lsa", {"train": QUICK}, seed=2)
    assert not first.fit_info()["from_cache"] and second.fit_info()["from_cache"]
    assert not other_seed.fit_info()["from_cache"]
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_killed_training_resumes_exactly(catalog, task, tmp_path):
    learner = catalog.learners["lsa"]({"train": QUICK})
    cfg = TrainConfig(**QUICK)

    def run(checkpoint, monitors=None):
        torch.manual_seed(0)
        model = learner.build_model(10, 1)
        meta_train(model, learner.loss, task, cfg, generator=torch.Generator().manual_seed(5), device="cpu",
                   lr=cfg.lr, checkpoint=checkpoint, monitors=monitors)
        return model

    calls = []

    def killer(model, held_out):
        calls.append(1)
        if len(calls) == 2:  # at step 100, after the step-50 checkpoint
            raise KeyboardInterrupt
        return 0.0

    ckpt = Checkpoint(tmp_path, "run")
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, {"kill": killer})
    assert ckpt.load()["step"] == 50 and not ckpt.load()["done"]
    resumed = run(ckpt)
    straight = run(None)
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)
    assert ckpt.load()["done"]


@pytest.mark.parametrize("field,value", [("heads", 0), ("attention", "cosine"), ("layers", 0), ("clip", -1.0)])
def test_bad_config_names_field(catalog, field, value):
    with pytest.raises(ConfigError, match=field):
        catalog.learners["lsa"]({field: value})


def test_presets(catalog):
    assert catalog.learners["softmax-tf"]().config.attention == "softmax"
    assert catalog.learners["layernorm-tf"]().config.layernorm
    assert catalog.learners["lsa"](train={"steps": 7}).label == "lsa[train.steps=7]"


@pytest.mark.parametrize("spec", ["softmax-tf[heads=2]", "layernorm-tf", "lsa[layers=2,recurrent=true,mlp=true,clip=5]"])
def test_variants_train_and_predict(catalog, task, spec):
    from iclbench.config import parse_spec

    name, overrides = parse_spec(spec)
    learner = fitted(catalog, task, name, {**overrides, "train": {**QUICK, "steps": 50}})
    ep = episode(task, 64).to(dtype=torch.float32)
    with torch.no_grad():
        pred = learner.predict(ep)
    assert pred.shape == (64, 1) and torch.isfinite(pred).all()


def context(catalog, tmp_path, seed=0):
    suite = catalog.suites.load("linear", catalog)
    return AnalysisContext(catalog, suite, seed, torch.device("cpu"), 2000, tmp_path)


def test_interpolation_endpoints(catalog, tmp_path):
    """Rescaling W_KQ / s, W_PV * s leaves the model unchanged: alpha = 0 is the trained loss,
    alpha = 1 the construction's."""
    spec = "lsa[train.steps=100,train.batch_size=256,train.lr=0.01,train.eval_every=50,train.checkpoint_every=50]"
    with cache_dir(tmp_path):
        ends = [catalog.analyses["interpolation"](learner=spec, alpha=a).run(context(catalog, tmp_path)) for a in (0.0, 1.0)]
    assert ends[0]["loss_interpolated"] == pytest.approx(ends[0]["loss_trained"], rel=1e-6)
    assert ends[1]["loss_interpolated"] == pytest.approx(ends[1]["loss_construction"], rel=1e-12)


def test_repeated_gd_is_gd_with_damped_rate(catalog, task, tmp_path):
    from iclbench_plugins.transformer.analyses import dampened_losses

    lsa_gd = fitted(catalog, task, "lsa-gd", {"eta": 4.0})
    ep = episode(task, 500)
    losses = dampened_losses(lsa_gd.constructed(10, 1), ep, 3, 0.5)  # (T, B)
    for t in (1, 2, 3):
        gd = catalog.learners["gd"](steps=t, eta=2.0)
        with torch.no_grad():
            expected = task_losses(gd.predict(ep), ep.query_y)  # (B,)
        assert torch.allclose(losses[t - 1], expected, rtol=1e-10, atol=1e-14)


def test_gd_alignment_monitor(catalog, task):
    from iclbench_plugins.transformer.learners import gd1_alignment

    ep = episode(task, 300)
    assert gd1_alignment(catalog.learners["lsa-gd"](eta=3.0).constructed(10, 1), ep) == pytest.approx(1.0, abs=1e-9)
    curve = fitted(catalog, task, "lsa", {"train": QUICK}).fit_info()["curve"]
    assert curve[-1]["sens_cos_gd1"] > max(0.95, curve[0]["sens_cos_gd1"])  # aligns with GD as it trains


@pytest.mark.parametrize("clip", [0.3, 100.0])  # active on many tokens / on none
def test_token_clipping_equals_clamping_after_every_layer(catalog, task, clip):
    torch.manual_seed(0)
    model = catalog.learners["lsa"](layers=3, clip=clip, init_scale=1.0).build_model(10, 1).double()
    ep = task.sample(64, generator=torch.Generator().manual_seed(2), device="cpu").to(dtype=torch.float64)
    z, n = model.token_sequence(ep)
    for k in range(3):
        z = model.block(k)(z, n, query_only=k == 2).clamp(-clip, clip)
    expected = -z[:, -1, 10:]
    assert torch.equal(model.predict(ep), expected)
    assert (expected.abs() == clip).any() == (clip < 1)  # the small bound does bind


def test_compiled_training_follows_eager_training(catalog, task):
    """torch.compile changes how a step runs, not what it computes: same curve to float rounding."""
    from iclbench.training import compiled_training

    cfg = {"train": {**QUICK, "steps": 20, "eval_every": 10, "checkpoint_every": 10}}
    eager = fitted(catalog, task, "lsa", cfg)
    with compiled_training(), warnings.catch_warnings():
        warnings.filterwarnings("error", message="torch.compile failed")  # a silent eager fallback would pass
        compiled = fitted(catalog, task, "lsa", cfg)
    for a, b in zip(eager.training.curve, compiled.training.curve, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-4)


def textbook_attention(attn, ctx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Attention written out per head: project queries, keys and values, score, mix, project."""
    q = torch.einsum("hij,btj->bhti", attn.W_Q, targets)  # (B, H, T, D)
    k = torch.einsum("hij,bnj->bhni", attn.W_K, ctx)  # (B, H, N, D)
    v = torch.einsum("hij,bnj->bhni", attn.W_V, ctx)  # (B, H, N, D)
    scores = torch.einsum("bhti,bhni->bhtn", q, k)  # (B, H, T, N)
    D, N = ctx.shape[-1], ctx.shape[1]
    weights = scores / N if attn.kind == "linear" else torch.softmax(scores / D**0.5, dim=-1)
    return torch.einsum("hij,bhtj->bti", attn.P, torch.einsum("bhtn,bhni->bhti", weights, v))  # (B, T, D)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("kind", ["linear", "softmax"])
def test_attention_equals_textbook_attention(kind, compiled):
    """The product form (W_KQ, W_PV) is exact for every head count, eagerly and compiled, gradients too."""
    from iclbench_plugins.transformer.model import Attention

    torch.manual_seed(0)
    attn = Attention(7, heads=3, kind=kind, init_scale=1.0).double()
    ctx, targets = torch.randn(5, 6, 7, dtype=torch.float64), torch.randn(5, 4, 7, dtype=torch.float64)
    run = torch.compile(attn) if compiled else attn
    ours, ref = run(ctx, targets), textbook_attention(attn, ctx, targets)
    assert torch.allclose(ours, ref, atol=1e-12, rtol=0)
    cot = torch.randn_like(ref)
    g_ours = torch.autograd.grad((ours * cot).sum(), list(attn.parameters()))
    g_ref = torch.autograd.grad((ref * cot).sum(), list(attn.parameters()))
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-11, rtol=0)
