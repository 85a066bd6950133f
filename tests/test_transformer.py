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
    from iclbench_plugins.analyses.lsa import dampened_losses

    lsa_gd = fitted(catalog, task, "lsa-gd", {"eta": 4.0})
    ep = episode(task, 500)
    losses = dampened_losses(lsa_gd.constructed(10, 1), ep, 3, 0.5)  # (T, B)
    for t in (1, 2, 3):
        gd = catalog.learners["gd"](steps=t, eta=2.0)
        with torch.no_grad():
            expected = task_losses(gd.predict(ep), ep.query_y)  # (B,)
        assert torch.allclose(losses[t - 1], expected, rtol=1e-10, atol=1e-14)


def test_gd_alignment_monitor(catalog, task):
    from iclbench_plugins.transformers.lsa import gd1_alignment

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
    from iclbench_plugins.transformers.nn.model import Attention

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


QUICK_LSA = "lsa[train.steps=100,train.batch_size=256,train.lr=0.01,train.eval_every=50,train.checkpoint_every=50]"


def test_repeated_reports_the_damping_sweep_and_the_undamped_divergence(catalog, tmp_path):
    """The sweep's entry at the configured damping is the damped curve's end; undamped (the paper's
    Fig. 10), GD diverges on every task whose step exceeds 2 / (largest curvature)."""
    from iclbench_plugins.analyses.lsa import dampened_losses, unstable

    ctx = context(catalog, tmp_path)
    with cache_dir(tmp_path):
        res = catalog.analyses["repeated"](learner=QUICK_LSA, steps=40).run(ctx)
    assert set(res["sweep"]) == {"0.25", "0.5", "0.75", "1"} == set(res["sweep_median"]) == set(res["unstable_tasks"])
    for label in ("trained", "gd"):
        assert res["sweep"]["0.75"][label] == pytest.approx(res["loss"][label][-1], rel=1e-6)
        assert res["sweep_median"]["0.75"][label] == pytest.approx(res["median_loss"][label][-1], rel=1e-6)
        assert res["sweep"]["1"][label] == pytest.approx(res["undamped"]["loss"][label][-1], rel=1e-6)
        assert len(res["undamped"]["loss"][label]) == 40 and len(res["loss"][label]) == 40
    assert res["undamped"]["loss"]["gd"][-1] > res["undamped"]["loss"]["gd"][0]  # the mean blows up undamped
    assert res["loss"]["gd"][-1] < res["loss"]["gd"][0]  # and falls damped
    gd, ep = ctx.learner("lsa-gd"), ctx.episode().to(dtype=torch.float64)
    eta = gd.gd.rates()[0][0]
    assert res["gd_eta"] == eta and res["unstable_tasks"]["1"] == int(unstable(ep, eta).sum()) > 0
    assert res["unstable_tasks"]["0.25"] == 0
    losses = dampened_losses(gd.constructed(10, 1), ep, 120, 1.0)  # (T, B)
    clearly = unstable(ep, 0.95 * eta)  # residuals grow by 1.1 per step at least: 1e10 in loss after 120 steps
    assert clearly.sum() > 0 and bool((losses[-1, clearly] > losses[0, clearly]).all())
    assert bool((losses[-1, clearly] > 1e3 * losses[0, clearly]).all())


def test_repeated_figure_shows_damped_undamped_and_sweep(catalog, tmp_path, monkeypatch):
    from iclbench_plugins.analyses import lsa as analyses

    figures = []
    monkeypatch.setattr(analyses, "save", lambda fig, path, **kw: figures.append(fig))
    lsa_gd = fitted(catalog, catalog.tasks["linear-regression"](), "lsa-gd", {"eta": 4.0})
    ep = episode(catalog.tasks["linear-regression"](), 200)
    runs = {x: {"trained": analyses.dampened_losses(lsa_gd.constructed(10, 1), ep, 5, x),
                "gd": analyses.dampened_losses(lsa_gd.constructed(10, 1), ep, 5, x)} for x in (0.5, 0.75, 1.0)}
    analyses.plot_repeated(runs, 0.75, tmp_path / "r.png", "lsa")
    titles = [ax.get_title() for ax in figures[0].axes]
    assert titles == ["λ = 0.75 (damped)", "λ = 1 (undamped, the paper's Fig. 10)", "loss after T against damping"]
    sweep = figures[0].axes[2]
    assert list(sweep.lines[0].get_xdata()) == [0.5, 0.75, 1.0]
    assert sweep.lines[0].get_ydata()[1] == pytest.approx(float(runs[0.75]["trained"][-1].mean()))


def test_weights_recover_the_gd_plus_plus_construction(catalog, task, tmp_path, monkeypatch):
    """The GD++ construction's own products give back its eta and gamma, also when W_KQ and W_PV are
    scaled against each other (the same layer); the figure adds the x-block and its -gamma diagonal."""
    from iclbench_plugins.analyses import lsa as analyses

    model = fitted(catalog, task, "lsa-gd++", {"steps": 2, "eta": 3.0, "gamma": 0.5}).constructed(10, 1)
    (kq, pv), = analyses.products(model)[:1]
    for s in (1.0, 2.5):
        (row,) = analyses.weight_rows([(kq * s, pv / s)], [3.0, 3.0], [0.5, 0.5], 10, 1)
        assert (row.scale, row.eta, row.gamma) == (pytest.approx(s), pytest.approx(3.0), pytest.approx(0.5))
        assert torch.allclose(row.pv, row.ref_pv, atol=1e-12) and torch.allclose(row.kq, row.ref_kq, atol=1e-12)
        assert row.name == "layers 1-2 (tied)"
    figures = []
    monkeypatch.setattr(analyses, "save", lambda fig, path, **kw: figures.append(fig))
    analyses.plot_weights([row], tmp_path / "w.png", "lsa", "GD++", curvature=True)
    matrices = [ax.get_title() for ax in figures[0].axes if ax.images]
    assert matrices == ["layers 1-2 (tied): trained W_KQ / s", "GD++ W_KQ", "layers 1-2 (tied): trained W_PV · s",
                        "GD++ W_PV (label entry −η = -3)", "layers 1-2 (tied): trained W_PV · s, x-block",
                        "GD++ W_PV x-block = −γ I"]
    diag = next(ax for ax in figures[0].axes if ax.get_title() == "x-block diagonal against −γ")
    assert list(diag.lines[0].get_ydata()) == pytest.approx([-0.5] * 10)
    analyses.plot_weights([row], tmp_path / "w.png", "lsa", "GD", curvature=False)
    assert len([ax for ax in figures[1].axes if ax.images]) == 4  # one layer against GD: no x-block row


@pytest.mark.parametrize("spec,construction", [("lsa[layers=2,recurrent=true]", "gd++"), ("lsa", "gd")])
def test_weights_analysis_compares_with_its_construction(catalog, tmp_path, spec, construction):
    name = spec.rstrip("]") + ("," if "[" in spec else "[") + QUICK_LSA.split("[", 1)[1]
    ctx = context(catalog, tmp_path)
    with cache_dir(tmp_path):
        res = catalog.analyses["weights"](learner=name).run(ctx)
        reference = ctx.learner(f"lsa-{construction}[steps={2 if 'layers=2' in spec else 1}]")
    etas, gammas = reference.gd.rates()
    assert (res["construction"], res["eta"], res["gamma"]) == (construction, etas, gammas)
    assert len(res["trained_eta"]) == len(res["trained_gamma"]) == len(res["scales"]) == 1  # tied: one layer
    assert res["trained_eta"][0] > 0 and (tmp_path / res["figure"].split("/")[-1]).exists()


@pytest.mark.parametrize("name", ["gd", "gd++"])
def test_clipped_construction_equals_clipped_gd(catalog, linear, name):
    """Token clipping binds (clip 0.3 < |y|) and the LSA construction still equals GD's clipped token view."""
    rates = {"eta": [4.0, 9.0, 2.0]} | ({"gamma": [1.0, 0.5, 2.0]} if name == "gd++" else {})
    gd = catalog.learners[name](steps=3, clip=0.3, **rates)
    lsa = catalog.learners[f"lsa-{name}"](steps=3, clip=0.3, **rates)
    ep = episode(linear, 512)
    with torch.no_grad():
        clipped, unclipped = gd.predict(ep), catalog.learners[name](steps=3, **rates).predict(ep)
        assert (clipped - lsa.predict(ep)).abs().max() < 1e-10
    assert (clipped - unclipped).abs().max() > 0.1  # the clip changes the answer
    assert clipped.abs().max() <= 0.3 + 1e-12
