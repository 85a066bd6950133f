"""The linear-regression task family: shapes, input laws, teacher consistency, distractors, validation."""

from __future__ import annotations

import pytest
import torch

from helpers import gen, predict, sample64
from iclbench.config import ConfigError


def test_shapes_and_dtype(catalog):
    ep = catalog.tasks["linear-regression"]({"N": 7, "d": 3, "dy": 2}).sample(5, generator=gen(0), device="cpu")
    assert ep.context_x.shape == (5, 7, 3) and ep.context_y.shape == (5, 7, 2)
    assert ep.query_x.shape == (5, 3) and ep.query_y.shape == (5, 2)
    assert ep.context_x.dtype == torch.float32
    assert (ep.batch_size, ep.n_context, ep.dx, ep.dy) == (5, 7, 3, 2)


def test_uniform_inputs_fill_the_configured_range(catalog):
    ep = catalog.tasks["linear-regression"]({"input_low": -2.0, "input_high": 3.0}).sample(2000, generator=gen(1), device="cpu")
    x = torch.cat([ep.context_x.flatten(), ep.query_x.flatten()])
    assert float(x.min()) >= -2.0 and float(x.max()) <= 3.0
    assert float(x.min()) < -1.99 and float(x.max()) > 2.99
    assert abs(float(x.mean()) - 0.5) < 0.02  # 220 000 draws of U(-2, 3): mean 0.5, sd 1.44
    assert abs(float(x.var()) - 25 / 12) < 0.03


@pytest.mark.parametrize("law,scale,mean,var", [
    ("normal", 0.5, 0.0, 0.25), ("exponential", 0.5, 0.5, 0.25), ("laplace", 0.5, 0.0, 0.5),
])
def test_other_input_laws_have_their_moments(catalog, law, scale, mean, var):
    task = catalog.tasks["linear-regression"]({"input": law, "input_scale": scale})
    x = task.sample(2000, generator=gen(2), device="cpu").context_x.double().flatten()
    assert abs(float(x.mean()) - mean) < 0.01
    assert abs(float(x.var()) / var - 1) < 0.03
    if law == "exponential":
        assert float(x.min()) >= 0


def test_labels_are_a_linear_function_of_the_inputs(catalog):
    # noiseless and N >= d: least squares on the context recovers W, hence the query label
    task = catalog.tasks["linear-regression"]({"N": 12, "d": 5, "dy": 3, "teacher_scale": 2.0})
    ep = sample64(task, 500, seed=3)
    pred = predict(catalog.learners["least-squares"](), ep)
    assert torch.allclose(pred, ep.query_y, atol=1e-4, rtol=0)
    # teacher W ~ N(0, 4 I): E||y||^2 = dy * 4 * d * E[x^2] = 3 * 4 * 5 / 12 = 5
    assert abs(float(ep.query_y.pow(2).sum(-1).mean()) / 5.0 - 1) < 0.15


def test_label_noise_has_the_configured_std(catalog):
    task = catalog.tasks["linear-regression"]({"N": 30, "d": 2, "noise_std": 0.3})
    ep = sample64(task, 2000, seed=4)
    w = torch.linalg.lstsq(ep.context_x, ep.context_y).solution  # (B, d, dy)
    resid = ep.query_y - torch.einsum("bdo,bd->bo", w, ep.query_x)
    # the query residual has variance 0.09 * (1 + x_q^T (X^T X)^-1 x_q) ~ 0.09 * (1 + d / (N - d - 1))
    assert abs(float(resid.var()) / (0.09 * (1 + 2 / 27)) - 1) < 0.1


@pytest.mark.parametrize("k", [1, 3, 10])
def test_distractors_replace_exactly_k_context_labels(catalog, k):
    clean = catalog.tasks["linear-regression"]().sample(300, generator=gen(5), device="cpu")
    noisy = catalog.tasks["linear-regression"]({"distractors": k}).sample(300, generator=gen(5), device="cpu")
    # W and x are drawn first, so inputs, query and the untouched labels are identical
    assert torch.equal(noisy.context_x, clean.context_x)
    assert torch.equal(noisy.query_x, clean.query_x) and torch.equal(noisy.query_y, clean.query_y)
    changed = (noisy.context_y != clean.context_y).any(-1).sum(1)  # (B,)
    assert torch.equal(changed, torch.full((300,), k))
    # replaced labels are N(0, 1) noise, independent of the teacher
    diff = noisy.context_y[noisy.context_y != clean.context_y].double()
    assert abs(float(diff.var()) - 1) < 0.2 * (10 / k) ** 0.5


def test_same_seed_gives_bit_identical_episodes(catalog):
    task = catalog.tasks["linear-regression"]({"distractors": 2, "noise_std": 0.1, "input": "laplace"})
    a, b = (task.sample(100, generator=gen(6), device="cpu") for _ in range(2))
    for name in ("context_x", "context_y", "query_x", "query_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c = task.sample(100, generator=gen(7), device="cpu")
    assert not torch.equal(a.context_x, c.context_x)


@pytest.mark.parametrize("config,field", [
    ({"input_low": 1.0, "input_high": 0.5}, "input_low"),
    ({"input_low": 0.5, "input_high": 0.5}, "input_low"),
    ({"distractors": 11}, "distractors"),
    ({"N": 0}, "N"),
    ({"d": -1}, "d"),
    ({"noise_std": -0.1}, "noise_std"),
    ({"input": "cauchy"}, "input"),
    ({"sigma": 1.0}, "sigma"),
])
def test_bad_configs_name_the_field(catalog, config, field):
    with pytest.raises(ConfigError) as err:
        catalog.tasks["linear-regression"](config)
    msg = str(err.value)
    assert "task 'linear-regression'" in msg and field in msg
    assert repr(next(iter(config.values()))) in msg or str(next(iter(config.values()))) in msg


def test_distractors_equal_to_n_is_allowed(catalog):
    ep = catalog.tasks["linear-regression"]({"N": 4, "distractors": 4}).sample(3, generator=gen(8), device="cpu")
    assert ep.context_y.shape == (3, 4, 1)


def test_reference_ood_inputs_mix_laws_per_task_and_fix_the_context_norm(catalog):
    task = catalog.tasks["linear-regression"](input="mixed", input_norm=3.0)
    ep = task.sample(6000, generator=torch.Generator().manual_seed(0), device="cpu")
    norms = ep.context_x.flatten(1).norm(dim=1)  # (B,)
    assert torch.allclose(norms, torch.full_like(norms, 3.0), rtol=1e-5)
    # one law per task: exponential contexts are all positive, laplace and normal ones are not
    positive = (ep.context_x > 0).flatten(1).all(dim=1).float().mean()
    assert abs(float(positive) - 1 / 3) < 0.03
    # the query is scaled with its own context: an exponential task's query is positive too
    exp_tasks = (ep.context_x > 0).flatten(1).all(dim=1)
    assert bool((ep.query_x[exp_tasks] > 0).all())
