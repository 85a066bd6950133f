"""Sine-wave tasks and deep-feature learners (MLP before LSA / GD)."""

from __future__ import annotations

import math

import pytest
import torch

from iclbench.metrics import task_losses
from iclbench_plugins.learners.gradient_descent import gd_predict
from iclbench_plugins.transformers.nn.constructions import set_gd_weights

QUICK = {"steps": 300, "batch_size": 256, "lr": 0.01, "eval_every": 100, "checkpoint_every": 100, "eval_tasks": 512}


def test_sine_ranges_and_law(catalog):
    ep = catalog.tasks["sine"]().sample(500, generator=torch.Generator().manual_seed(0), device="cpu").to(dtype=torch.float64)
    x = torch.cat([ep.context_x[..., 0], ep.query_x], 1)  # (B, N+1)
    y = torch.cat([ep.context_y[..., 0], ep.query_y], 1)
    assert ep.context_x.shape == (500, 10, 1) and x.min() >= -5 and x.max() <= 5
    # y = a sin(x + phase) = (a cos phase) sin x + (a sin phase) cos x: recover a and phase exactly
    basis = torch.stack([torch.sin(x), torch.cos(x)], -1)  # (B, N+1, 2)
    coef = torch.linalg.lstsq(basis, y[..., None]).solution[..., 0]  # (B, 2)
    assert torch.allclose((basis @ coef[..., None])[..., 0], y, atol=1e-5)  # sampled in float32
    amp, phase = coef.norm(dim=1), torch.atan2(coef[:, 1], coef[:, 0])
    assert amp.min() >= 0.1 and amp.max() <= 5 and phase.min() >= 0 and phase.max() <= math.pi
    assert amp.max() > 4.5 and amp.min() < 0.6  # the whole range is used


def trained(catalog, name, task, steps=QUICK["steps"]):
    learner = catalog.learners[name](train={**QUICK, "steps": steps})
    learner.fit(task, generator=torch.Generator().manual_seed(1), device="cpu")
    return learner


def test_mlp_gd_is_one_gd_step_on_its_features(catalog):
    task = catalog.tasks["sine"]()
    learner = trained(catalog, "mlp-gd", task, steps=20)
    model = learner.model.double()
    ep = task.sample(100, generator=torch.Generator().manual_seed(4), device="cpu").to(dtype=torch.float64)
    with torch.no_grad():
        z = model.features(ep)
        W = model.width
        import iclbench

        feats = iclbench.Episode(z[:, :-1, :W], z[:, :-1, W:], z[:, -1, :W], ep.query_y)
        expected = model.initial(ep) + gd_predict(feats, model.eta.reshape(1))
        assert torch.allclose(model.predict(ep), expected, atol=1e-12)


def test_mlp_lsa_with_gd_weights_equals_mlp_gd(catalog):
    task = catalog.tasks["sine"]()
    gd = trained(catalog, "mlp-gd", task, steps=20).model.double()
    lsa = catalog.learners["mlp-lsa"]().build_model(1, 1).double()
    lsa.embed.load_state_dict(gd.embed.state_dict())
    lsa.mlp.load_state_dict(gd.mlp.state_dict())
    set_gd_weights(lsa.lsa, [float(gd.eta.detach())])
    ep = task.sample(100, generator=torch.Generator().manual_seed(4), device="cpu").to(dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(lsa.predict(ep), gd.predict(ep), atol=1e-10)


@pytest.mark.parametrize("name", ["mlp-lsa", "mlp-gd"])
def test_short_training_on_sines_beats_zero(catalog, name):
    task = catalog.tasks["sine"]()
    learner = trained(catalog, name, task)
    ep = task.sample(2000, generator=torch.Generator().manual_seed(9), device="cpu")
    with torch.no_grad():
        loss = float(task_losses(learner.predict(ep), ep.query_y).mean())
    zero = float(task_losses(torch.zeros_like(ep.query_y), ep.query_y).mean())
    assert loss < 0.7 * zero


@pytest.mark.parametrize("name", ["mlp-lsa", "mlp-gd"])
def test_prediction_without_context_features_equals_the_plain_path(catalog, name):
    """`predict` never forms the context's MLP features; it must equal attention on formed features."""
    torch.manual_seed(3)
    model = catalog.learners[name]().build_model(1, 1).double()
    with torch.no_grad():
        for p in model.parameters():  # every weight and bias non-trivial
            p.copy_(torch.randn_like(p) / max(1, p.shape[-1] if p.dim() > 1 else 1) ** 0.5)
    ep = catalog.tasks["sine"]().sample(64, generator=torch.Generator().manual_seed(5), device="cpu").to(dtype=torch.float64)
    fast, plain = model.predict(ep), model.predict_explicit(ep)
    assert plain.abs().mean() > 0.1  # the attention term is not negligible
    assert torch.allclose(fast, plain, rtol=1e-10, atol=1e-10)


def test_sine_parameters_are_recovered_exactly():
    from iclbench import Episode
    from iclbench_plugins.analyses.sine_functions import sine_parameters, true_sine

    amp, phase = torch.tensor([0.5, 2.0, 4.5], dtype=torch.float64), torch.tensor([0.1, 1.5, 3.0], dtype=torch.float64)
    x = torch.linspace(-5, 5, 10, dtype=torch.float64).repeat(3, 1)[..., None]  # (3, 10, 1)
    y = amp[:, None, None] * torch.sin(x + phase[:, None, None])  # (3, 10, 1)
    ep = Episode(x, y, x[:, 0], y[:, 0])
    a, p = sine_parameters(ep)
    assert torch.allclose(a, amp, atol=1e-12) and torch.allclose(p, phase, atol=1e-12)
    grid = torch.linspace(-5, 5, 7, dtype=torch.float64)
    assert torch.allclose(true_sine(ep, grid), amp[:, None] * torch.sin(grid + phase[:, None]), atol=1e-12)


def test_sine_functions_figure_names_learners_briefly_and_labels_its_axes(catalog, tmp_path, monkeypatch):
    """A panel per task titled with its amplitude and phase, x and y labelled, one legend below the
    panels naming learners MLP+LSA / MLP+GD rather than by their training settings."""
    from iclbench.analysis import AnalysisContext
    from iclbench.checkpoints import cache_dir
    from iclbench_plugins.analyses import sine_functions as features

    figures = []
    monkeypatch.setattr(features, "save", lambda fig, path, **kw: figures.append(fig))
    train = "train.steps=20,train.batch_size=256,train.eval_every=10,train.checkpoint_every=10,train.eval_tasks=256"
    ctx = AnalysisContext(catalog, catalog.suites.load("sine", catalog), 0, torch.device("cpu"), 500, tmp_path)
    with cache_dir(tmp_path):
        res = catalog.analyses["sine-functions"](learners=[f"mlp-lsa[{train}]", f"mlp-gd[{train}]"], tasks=3, grid=50).run(ctx)
    assert len(res["amplitude"]) == len(res["phase"]) == 3
    assert all(0.1 <= a <= 5 for a in res["amplitude"]) and all(0 <= p <= math.pi for p in res["phase"])
    label = "train.steps=20,train.batch_size=256,train.eval_tasks=256"  # execution-only options are not in labels
    assert set(res["mse_final"]) == {f"mlp-lsa[{label}] final", f"mlp-gd[{label}] final"}
    fig = figures[0]
    assert [ax.get_title() for ax in fig.axes] == [f"task {i + 1}: a = {a:.2f}, φ = {p:.2f}"
                                                  for i, (a, p) in enumerate(zip(res["amplitude"], res["phase"]))]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [("x", "y"), ("x", ""), ("x", "")]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "truth a sin(x + φ)", "MLP+LSA: initial (before attention)", "MLP+LSA: final",
        "MLP+GD: initial (before attention)", "MLP+GD: final", "context (x_i, y_i)"]
    assert legend.get_bbox_to_anchor().y1 <= fig.axes[0].get_position().y0 * fig.bbox.height  # below the panels


def test_function_distances_compare_the_first_two_learners():
    from iclbench_plugins.analyses.sine_functions import function_distances

    a = {"initial": torch.zeros(2, 3), "final": torch.ones(2, 3)}
    b = {"initial": torch.tensor([[1.0] * 3, [3.0] * 3]), "final": torch.ones(2, 3)}
    got = function_distances([a, b])  # per task: initial 1 and 9, final 0 and 0
    assert got["initial"] == 5.0 and got["final"] == 0.0 and got["final_ci95"] == 0.0
    assert got["initial_ci95"] == pytest.approx(1.96 * (32 ** 0.5) / 2 ** 0.5)  # sd of (1, 9) is sqrt(32)
    assert function_distances([a]) == {}
