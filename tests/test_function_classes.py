"""Garg et al. 2022 function classes: each law checked statistically, with tolerances from the law."""

from __future__ import annotations

import math
import tomllib
from importlib.resources import files

import pytest
import torch

from helpers import gen
from iclbench.catalog import build_catalog
from iclbench.config import ConfigError
from iclbench.plugins import make_plugin_manager
from iclbench_plugins.tasks import function_classes as fc

B = 3000  # tasks per statistical check


@pytest.fixture(scope="module")
def garg():
    """The installed plugins plus this module's tasks (not an entry point of its own)."""
    pm = make_plugin_manager()
    if not pm.is_registered(fc):
        pm.add(fc, "function-classes", "tests")
    return build_catalog(pm)


def draw(garg, name, n=B, seed=0, **config):
    return garg.tasks[name](config).sample(n, generator=gen(seed), device="cpu")


def labels(ep) -> torch.Tensor:
    """(B, N+1) float64 labels, the query last."""
    return torch.cat([ep.context_y[..., 0], ep.query_y], dim=1).double()


def inputs(ep) -> torch.Tensor:
    """(B, N+1, d) float64 inputs, the query last."""
    return torch.cat([ep.context_x, ep.query_x[:, None]], dim=1).double()


def assert_mean(per_task: torch.Tensor, expected: float, sigmas: float = 5.0):
    """The mean of i.i.d. per-task values is `expected` within `sigmas` standard errors."""
    se = float(per_task.std()) / math.sqrt(per_task.numel())
    assert abs(float(per_task.mean()) - expected) < sigmas * se, (float(per_task.mean()), expected, se)


def lstsq_weights(ep, features=lambda x: x) -> torch.Tensor:
    """(B, d) least-squares weights from the context (exact for noiseless labels when N >= d)."""
    return torch.linalg.lstsq(features(ep.context_x.double()), ep.context_y.double()).solution[..., 0]


def test_registered_and_every_suite_builds(garg):
    assert {"garg-linear", "garg-relu", "garg-tree"} <= set(garg.tasks)
    folder = files("iclbench_plugins.suites")
    names = {tomllib.loads((folder / f"{s}.toml").read_text())["name"]
             for s in ("garg-linear", "garg-sparse", "garg-relu", "garg-tree")}
    for name in names:
        suite = garg.suites.load(name, garg)  # validates every task name and config
        assert suite.description and sum(e.in_distribution for e in suite.evals) == 1
    relu = garg.suites.load("garg-relu", garg)
    assert [e.task.name for e in relu.evals] == ["garg-relu", "garg-linear"]


CASES = [
    ("garg-linear", {}), ("garg-linear", {"sparsity": 3, "noise_std": 0.5}), ("garg-linear", {"quadratic": True}),
    ("garg-linear", {"classification": True}), ("garg-linear", {"skew": True, "quadrants": True}),
    ("garg-linear", {"half_subspace": True, "overlapping_query": True}),
    ("garg-linear", {"N": 7, "orthogonal_query": True, "renormalize_ys": True, "noise_std": 1.0}),
    ("garg-linear", {"num_tasks": 4, "x_scale": 2.0, "y_scale": 0.5}),
    ("garg-relu", {"hidden": 8}), ("garg-tree", {"depth": 2}), ("garg-tree", {"N": 3, "d": 5}),
]


@pytest.mark.parametrize("name,config", CASES)
def test_shapes_and_seeded_determinism(garg, name, config):
    task = garg.tasks[name](config)
    N, d = task.config.N, task.config.d
    a, b = (task.sample(6, generator=gen(1), device="cpu") for _ in range(2))
    assert a.context_x.shape == (6, N, d) and a.context_y.shape == (6, N, 1)
    assert a.query_x.shape == (6, d) and a.query_y.shape == (6, 1)
    assert a.context_x.dtype == a.context_y.dtype == torch.float32
    for f in ("context_x", "context_y", "query_x", "query_y"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.context_x, task.sample(6, generator=gen(2), device="cpu").context_x)


@pytest.mark.parametrize("name,config,power", [
    ("garg-linear", {}, 20.0),  # E (w.x)^2 = E|x|^2 = d
    ("garg-linear", {"sparsity": 3}, 3.0),  # unrescaled: k of the d coordinates
    ("garg-linear", {"quadratic": True}, 20.0),  # E ((x^2).w)^2 / 3 = d E x^4 / 3
    ("garg-linear", {"d": 6, "N": 10, "x_scale": 2.0, "y_scale": 0.5}, 6.0),  # 0.25 * 4 * d
    ("garg-relu", {}, 20.0),  # (2/h) * h * E relu(a)^2, a ~ N(0, |x|^2): (2/h) h d / 2
    ("garg-relu", {"hidden": 7}, 20.0),  # the sqrt(2/h) scaling makes it independent of h
    ("garg-tree", {}, 1.0),  # a leaf value ~ N(0, 1)
])
def test_label_power_follows_the_law(garg, name, config, power):
    y = labels(draw(garg, name, **config))  # (B, N+1)
    assert_mean(y.mean(1), 0.0)
    assert_mean(y.pow(2).mean(1), power)


def test_linear_labels_are_exactly_linear(garg):
    ep = draw(garg, "garg-linear", n=300)
    w = lstsq_weights(ep)  # (B, d) N = 40 >= d = 20
    assert torch.allclose(torch.einsum("bd,bd->b", w, ep.query_x.double()), ep.query_y[:, 0].double(), atol=1e-4)


@pytest.mark.parametrize("k", [1, 3, 20])
def test_sparse_weights_have_exactly_k_nonzeros(garg, k):
    w = lstsq_weights(draw(garg, "garg-linear", n=500, sparsity=k))  # (B, d)
    assert torch.equal((w.abs() > 1e-5).sum(1), torch.full((500,), k))  # lstsq error ~1e-8


def test_quadratic_labels_are_linear_in_squared_inputs(garg):
    ep = draw(garg, "garg-linear", n=300, quadratic=True)
    w = lstsq_weights(ep, lambda x: x.pow(2))  # (B, d)
    pred = torch.einsum("bd,bd->b", w, ep.query_x.double().pow(2))
    assert torch.allclose(pred, ep.query_y[:, 0].double(), atol=1e-3)
    # the weights are N(0, I) / sqrt(3): E |w|^2 = d / 3
    assert_mean(w.pow(2).sum(1), 20 / 3)


def test_classification_labels_are_signs_of_the_linear_ones(garg):
    clean, signed = draw(garg, "garg-linear", n=500), draw(garg, "garg-linear", n=500, classification=True)
    assert torch.equal(labels(signed), torch.sign(labels(clean)))
    assert set(labels(signed).unique().tolist()) == {-1.0, 1.0}


def test_label_noise_and_garg_renormalisation(garg):
    sigma, d = 1.0, 20
    clean = labels(draw(garg, "garg-linear"))
    noisy = labels(draw(garg, "garg-linear", noise_std=sigma))  # w, x drawn first: same draws
    noise = noisy - clean  # (B, N+1) i.i.d. N(0, sigma^2)
    assert_mean(noise.mean(1), 0.0)
    assert abs(float(noise.var()) / sigma ** 2 - 1) < 5 * math.sqrt(2 / noise.numel())
    renorm = labels(draw(garg, "garg-linear", noise_std=sigma, renormalize_ys=True))
    factor = math.sqrt(d / (d + sigma ** 2))  # the population value of Garg's sqrt(d) / std(y)
    assert torch.allclose(renorm, factor * noisy, rtol=1e-5, atol=1e-5)
    assert_mean(renorm.pow(2).mean(1), float(d))


def test_x_and_y_scale_multiply_the_same_draws(garg):
    base = draw(garg, "garg-linear", n=50)
    xs, ys = draw(garg, "garg-linear", n=50, x_scale=2.0), draw(garg, "garg-linear", n=50, y_scale=3.0)
    assert torch.allclose(inputs(xs), 2 * inputs(base)) and torch.allclose(labels(xs), 2 * labels(base), rtol=1e-5, atol=1e-5)
    assert torch.equal(inputs(ys), inputs(base)) and torch.allclose(labels(ys), 3 * labels(base), rtol=1e-5, atol=1e-5)


def pooled_cov(ep) -> torch.Tensor:
    """(d, d) second-moment matrix of every input of every task (they share one law)."""
    x = inputs(ep).flatten(0, 1)  # (B (N+1), d)
    return x.T @ x / x.shape[0]


def test_skewed_inputs_have_eigenvalues_one_over_i_squared_and_trace_d(garg):
    d = 20
    ep = draw(garg, "garg-linear", skew=True)
    n = ep.batch_size * (ep.n_context + 1)
    eig = torch.linalg.eigvalsh(pooled_cov(ep)).flip(0)  # (d,) descending
    i = torch.arange(1, d + 1, dtype=torch.float64)
    expected = (1 / i ** 2) * d / (1 / i ** 2).sum()  # (d,) the law's eigenvalues, trace d
    assert torch.allclose(eig, expected, rtol=10 * math.sqrt(2 / n))  # sample eigenvalue sd ~ lambda sqrt(2/n)
    assert_mean(inputs(ep).pow(2).sum(-1).flatten(), float(d))
    # the basis is fixed by basis_seed: another seed rotates the same spectrum
    other = draw(garg, "garg-linear", n=500, skew=True, basis_seed=1)
    task = garg.tasks["garg-linear"](skew=True)
    assert not torch.allclose(task.input_cov(), garg.tasks["garg-linear"](skew=True, basis_seed=1).input_cov(), atol=0.1)
    assert torch.allclose(torch.linalg.eigvalsh(pooled_cov(other)).sum(), torch.tensor(float(d), dtype=torch.float64), rtol=0.05)


def test_half_subspace_inputs_have_rank_d_over_2_in_one_fixed_subspace(garg):
    ep = draw(garg, "garg-linear", n=500, half_subspace=True)
    x = inputs(ep)  # (B, N+1, d) float32 draws: rank up to float32 rounding
    assert torch.equal(torch.linalg.matrix_rank(x, rtol=1e-5), torch.full((500,), 10))
    assert int(torch.linalg.matrix_rank(x.flatten(0, 1), rtol=1e-5)) == 10  # all tasks share the subspace
    assert_mean(x.pow(2).sum(-1).flatten(), 20.0)  # scaled by sqrt(2): E|x|^2 = d


def test_quadrants_fold_the_context_into_one_orthant_and_leave_the_query_free(garg):
    ep = draw(garg, "garg-linear", quadrants=True)
    signs = torch.sign(ep.context_x)  # (B, N, d)
    assert torch.equal(signs, signs[:, :1].expand_as(signs))  # one sign vector per task
    assert_mean(signs[:, 0].double().mean(1), 0.0)  # a uniformly random sign vector
    agree = (torch.sign(ep.query_x) == signs[:, 0]).double().mean(1)  # (B,) the query is not folded
    assert_mean(agree, 0.5)
    assert_mean(ep.context_x.double().pow(2).sum(-1).mean(1), 20.0)  # |x| keeps N(0, I)'s moments


def test_orthogonal_query_is_orthogonal_to_the_context_span(garg):
    ep = draw(garg, "garg-linear", n=1000, N=10, orthogonal_query=True)
    Q = torch.linalg.qr(ep.context_x.double().transpose(1, 2)).Q  # (B, d, N)
    q = ep.query_x.double()  # (B, d)
    along = torch.einsum("bdn,bd->bn", Q, q).norm(dim=1) / q.norm(dim=1)  # (B,)
    assert float(along.max()) < 1e-5
    assert_mean(q.pow(2).sum(1), 20.0)  # rescaled to the drawn query's norm: E|q|^2 = d
    with pytest.raises(ConfigError, match="orthogonal_query"):
        garg.tasks["garg-linear"](orthogonal_query=True)  # N = 40 >= d: the context spans R^d


def test_overlapping_query_copies_a_uniform_context_point(garg):
    ep = draw(garg, "garg-linear", overlapping_query=True)
    same = (ep.context_x == ep.query_x[:, None]).all(-1)  # (B, N)
    assert torch.equal(same.sum(1), torch.ones(B, dtype=torch.long))
    pick = same.double().argmax(1)  # (B,) the copied point's index
    assert torch.allclose(ep.context_y[torch.arange(B), pick.long()], ep.query_y, rtol=1e-5, atol=1e-6)
    assert_mean(pick.double(), (ep.n_context - 1) / 2)  # uniform over the N context points


def test_finite_pool_is_seeded_and_each_task_uses_one_of_its_weights(garg):
    P = 5
    task = garg.tasks["garg-linear"](num_tasks=P)
    pool = task.task_pool("cpu").double()  # (P, d)
    assert pool.shape == (P, 20)
    ep = task.sample(2000, generator=gen(0), device="cpu")
    w = lstsq_weights(ep)  # (B, d)
    dist = (w[:, None] - pool[None]).norm(dim=-1)  # (B, P)
    assert float(dist.min(1).values.max()) < 1e-3  # every task's w is a pool row
    counts = torch.bincount(dist.argmin(1), minlength=P).double()  # uniform: 400 +- 18 each
    assert float((counts - 400).abs().max()) < 5 * math.sqrt(2000 * (1 / P) * (1 - 1 / P))
    assert not torch.equal(ep.context_x[0], ep.context_x[1])  # inputs stay fresh
    again = garg.tasks["garg-linear"](num_tasks=P, N=3).task_pool("cpu")
    other = garg.tasks["garg-linear"](num_tasks=P, pool_seed=1).task_pool("cpu")
    assert torch.equal(again, pool.float()) and not torch.allclose(other, again)
    sparse = garg.tasks["garg-linear"](num_tasks=P, sparsity=2, y_scale=2.0).task_pool("cpu")
    assert torch.equal((sparse != 0).sum(1), torch.full((P,), 2))
    with pytest.raises(ValueError, match="num_tasks"):
        garg.tasks["garg-linear"]().task_pool("cpu")


def test_tree_evaluation_follows_signs_right_when_positive():
    coords = torch.tensor([[0, 1, 2]])  # (1, 3) depth 2: root on x0, left child on x1, right on x2
    leaves = torch.tensor([[10.0, 11.0, 12.0, 13.0]])  # (1, 4)
    x = torch.tensor([[[-1.0, -1, 5], [-1, 1, -5], [1, 5, -1], [1, -5, 1], [0.0, 0, 0]]])  # (1, 5, 3)
    assert fc.tree_predict(coords, leaves, x).tolist() == [[10.0, 11.0, 12.0, 13.0, 10.0]]  # 0 goes left


def test_sampled_trees_take_at_most_2_to_the_depth_leaf_values(garg):
    y = labels(draw(garg, "garg-tree", n=500))  # (B, N+1)
    distinct = torch.tensor([row.unique().numel() for row in y[:50]])
    assert int(distinct.max()) <= 16 and int(distinct.min()) >= 2
    assert bool((y.sort(1).values.diff(1) != 0).sum(1).le(15).all())  # all tasks, vectorised


def test_depth_one_trees_split_on_a_uniform_coordinate(garg):
    d = 8
    ep = draw(garg, "garg-tree", n=2000, d=d, depth=1)
    x, y = inputs(ep), labels(ep)  # (B, N+1, d), (B, N+1)
    right = x > 0  # (B, N+1, d)
    yy = y[..., None].expand_as(right)
    spread = lambda m: torch.where(m, yy, -math.inf).amax(1) - torch.where(m, yy, math.inf).amin(1)  # (B, d)
    consistent = (spread(right) <= 0) & (spread(~right) <= 0)  # (B, d): y constant on both sides of x_i = 0
    assert torch.equal(consistent.sum(1), torch.ones(2000, dtype=torch.long))  # exactly the split coordinate
    counts = torch.bincount(consistent.double().argmax(1), minlength=d).double()  # 250 +- 15 each
    assert float((counts - 250).abs().max()) < 5 * math.sqrt(2000 / d * (1 - 1 / d))


@pytest.mark.parametrize("config,fields", [
    ({"sparsity": 21}, ["sparsity", "d"]),
    ({"skew": True, "half_subspace": True}, ["skew", "half_subspace"]),
    ({"quadrants": True, "overlapping_query": True}, ["quadrants", "overlapping_query"]),
    ({"N": 10, "half_subspace": True, "orthogonal_query": True}, ["orthogonal_query", "N", "half_subspace"]),
    ({"classification": True, "noise_std": 0.1}, ["classification", "noise_std"]),
    ({"classification": True, "y_scale": 2.0}, ["classification", "y_scale"]),
    ({"pool_seed": 3}, ["pool_seed", "num_tasks"]),
    ({"basis_seed": 3}, ["basis_seed", "skew"]),
    ({"x_scale": 0.0}, ["x_scale"]),
    ({"num_tasks": 0}, ["num_tasks"]),
])
def test_conflicting_or_bad_configs_name_the_fields(garg, config, fields):
    with pytest.raises(ConfigError) as err:
        garg.tasks["garg-linear"](config)
    assert all(f in str(err.value) for f in fields), str(err.value)


def test_classification_is_scored_by_accuracy(tmp_path):
    """The classification suite records the accuracy of the prediction's sign beside the loss:
    least squares on 40 points in d = 20 separates far better than chance, zero never does."""
    from iclbench import board as leaderboard
    from iclbench.catalog import build_catalog
    from iclbench.plugins import make_plugin_manager
    from iclbench.runner import Evaluation, LearnerSpec, Plan
    from iclbench.store import RESULTS_FILE, ResultStore, read_records

    catalog = build_catalog(make_plugin_manager())
    suite = catalog.suites.load("garg-classification", catalog)
    plan = Plan([LearnerSpec("zero", {}), LearnerSpec("least-squares", {})], suite, [0], n_tasks=400)
    Evaluation(catalog, plan, ResultStore(tmp_path)).run()
    records = read_records(tmp_path / RESULTS_FILE)
    acc = {r["label"]: r["metrics"]["accuracy"] for r in records}
    assert acc["zero"] == 0.0 and acc["least-squares"] > 0.7  # measured 0.785 on 400 tasks; chance is 0.5
    assert "### accuracy of the prediction's sign (classification tasks): in distribution" in \
        leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(records)))
    plain = catalog.tasks["garg-linear"]()
    assert plain.scores(torch.zeros(3, 1), plain.sample(3, generator=torch.Generator().manual_seed(0), device="cpu")) == {}
