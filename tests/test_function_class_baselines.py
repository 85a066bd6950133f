"""Garg et al.'s function-class baselines and the Bayes-optimal predictors, checked on numbers:
against closed forms, brute force, optimality conditions, and sklearn where it is installed."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

import iclbench
import iclbench_plugins.learners.bayes_optimal as bayes_optimal
import iclbench_plugins.learners.function_class_baselines as fcb
import iclbench_plugins.learners.trees as trees
from helpers import gen, predict
from iclbench.catalog import build_catalog
from iclbench.episode import Episode
from iclbench.plugins import make_plugin_manager
from iclbench_plugins.learners.baselines import Averaging
from iclbench_plugins.learners.least_squares import LeastSquares, Ridge

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batched tensors: one thread is fastest and keeps off a busy machine's other cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear_episode(B, N, d, seed, *, dy=1, noise=0.0, sparsity=None, pool=None):
    """x ~ N(0, I), y = W x + noise with W ~ N(0, I) (k-sparse, or drawn from `pool` (P, dy, d))."""
    g = gen(seed)
    x = torch.randn(B, N + 1, d, generator=g, dtype=F64)  # (B, N+1, d), the query last
    if pool is not None:
        W = pool[torch.randint(len(pool), (B,), generator=g)]  # (B, dy, d)
    else:
        W = torch.randn(B, dy, d, generator=g, dtype=F64)
        if sparsity is not None:
            W = W * (torch.rand(B, 1, d, generator=g).argsort(2) < sparsity)  # k random coordinates kept
    y = torch.einsum("bod,bnd->bno", W, x) + noise * torch.randn(B, N + 1, W.shape[1], generator=g, dtype=F64)
    return Episode(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1])


def loss(pred, ep):
    return float(0.5 * (pred - ep.query_y).pow(2).sum(-1).mean())


def test_each_module_registers_the_learners_it_defines():
    pm = make_plugin_manager(entry_points=False)
    for module, name in ((fcb, "function-class-baselines"), (trees, "trees"), (bayes_optimal, "bayes-optimal")):
        pm.add(module, name, "test")
    cat = build_catalog(pm)
    assert {n: cat.learners.owner(n) for n in cat.learners} == {
        "lasso": "function-class-baselines", "relu-nn": "function-class-baselines", "tree": "trees",
        "boosting": "trees", "bayes-ridge": "bayes-optimal", "dmmse": "bayes-optimal"}


# lasso


def test_lasso_with_vanishing_alpha_is_least_squares():
    ep = linear_episode(40, 30, 10, seed=1, dy=2, noise=0.5)
    lasso = predict(fcb.Lasso(alpha=1e-9), ep)
    assert torch.allclose(lasso, predict(LeastSquares(), ep), atol=1e-4, rtol=0)


def test_lasso_recovers_sparse_weights_that_least_squares_cannot():
    ep = linear_episode(100, 12, 20, seed=2, sparsity=3)  # N < d, noiseless, 3-sparse
    lasso, ls = loss(predict(fcb.Lasso(alpha=1e-3), ep), ep), loss(predict(LeastSquares(), ep), ep)
    assert lasso < 0.1 * ls, (lasso, ls)


@pytest.mark.parametrize("N", [5, 15, 40])
def test_lasso_satisfies_the_kkt_conditions(N):
    ep = linear_episode(60, N, 10, seed=N, noise=1.0)
    alpha = 0.1
    W, _ = fcb.lasso_weights(ep.context_x, ep.context_y, alpha)  # (B, d, 1)
    X, Y = ep.context_x, ep.context_y
    g = X.transpose(1, 2) @ (X @ W - Y) / N  # (B, d, 1) gradient of 1/(2N) ||Y - X W||^2
    on = W != 0
    assert on.any() and (~on).any()
    assert float((g + alpha * W.sign())[on].abs().max()) < 1e-4  # stationary on the support
    assert float(g[~on].abs().max()) < alpha + 1e-4  # subgradient bound off it


def test_lasso_tunes_alpha_on_training_tasks():
    class Sparse(iclbench.Task):
        name = "sparse-test"

        def sample(self, n, *, generator, device):
            return linear_episode(n, 12, 20, seed=int(torch.randint(1 << 30, (1,), generator=generator)), sparsity=3)

    lasso = fcb.Lasso(alphas=[1.0, 1e-3], tune_tasks=32)
    lasso.fit(Sparse(), generator=gen(0), device="cpu")
    assert lasso.hyperparameters() == {"alpha": 1e-3}


# tree


def sse_split(x, y, f, t):
    """SSE of the two sides of x[:, f] <= t (x (N, d), y (N, dy))."""
    left = x[:, f] <= t
    return sum(float((part - part.mean(0)).pow(2).sum()) for part in (y[left], y[~left]))


def test_depth_one_tree_takes_the_split_of_least_squared_error():
    B, N, d = 8, 9, 3
    g = gen(3)
    x, y = torch.rand(B, N, d, generator=g, dtype=F64), torch.randn(B, N, 2, generator=g, dtype=F64)
    q = torch.rand(B, d, generator=g, dtype=F64)
    pred, feats, thrs = trees.query_path(x, y, q, max_depth=1)
    assert feats.shape == (B, 1)
    for b in range(B):
        cuts = [(f, (lo + hi) / 2) for f in range(d)
                for lo, hi in itertools.pairwise(x[b, :, f].sort().values.tolist())]
        f, t = min(cuts, key=lambda c: sse_split(x[b], y[b], *c))
        assert (int(feats[b, 0]), float(thrs[b, 0])) == (f, t)
        side = (x[b, :, f] <= t) == bool(q[b, f] <= t)
        assert torch.allclose(pred[b], y[b][side].mean(0), atol=1e-12)


def test_unlimited_tree_interpolates_its_context():
    B, N, d = 10, 12, 3
    g = gen(4)
    x, y = torch.rand(B, N, d, generator=g, dtype=F64), torch.randn(B, N, 2, generator=g, dtype=F64)
    # one episode per (task, context point), querying that point
    ep = Episode(x.repeat_interleave(N, 0), y.repeat_interleave(N, 0), x.reshape(B * N, d), y.reshape(B * N, 2))
    assert torch.allclose(predict(trees.DecisionTree(max_depth=None), ep), ep.query_y, atol=1e-12, rtol=0)


def reference_path(x, y, q, depth):
    """Plain-Python greedy CART grown along the query's path, for one task (x (N, d), y (N, dy),
    q (d,)): the query's leaf mean (dy,) and whether some chosen split was tied with another."""
    x, y, q = x.tolist(), y.tolist(), q.tolist()
    pts, tied = list(range(len(x))), False

    def sse(rows):
        means = [sum(r[o] for r in rows) / len(rows) for o in range(len(rows[0]))] if rows else []
        return sum((r[o] - means[o]) ** 2 for r in rows for o in range(len(means)))

    for _ in range(len(x) if depth is None else depth):
        rows = [y[i] for i in pts]
        if len(pts) < 2 or sse(rows) <= 1e-12 * sum(v * v for r in rows for v in r):
            break
        cuts = [(sse([y[i] for i in pts if x[i][f] <= t]) + sse([y[i] for i in pts if x[i][f] > t]), f, t)
                for f in range(len(q))
                for t in ((lo + hi) / 2 for lo, hi in itertools.pairwise(sorted({x[i][f] for i in pts})))]
        if not cuts:
            break
        best, f, t = min(cuts)
        tied |= sum(c[0] <= best + 1e-9 * (1 + best) for c in cuts) > 1
        pts = [i for i in pts if (x[i][f] <= t) == (q[f] <= t)]
    return torch.tensor([sum(y[i][o] for i in pts) / len(pts) for o in range(len(y[0]))], dtype=F64), tied


def tree_cases():
    """(x, y, q, max_depth): one feature at any depth (ties impossible), and several features
    at depth 3 with nodes large enough that ties are rare. float32 inputs, as sklearn uses."""
    g = gen(5)
    one = (torch.rand(20, 20, 1, generator=g).float(), torch.randn(20, 20, 1, generator=g, dtype=F64),
           torch.rand(20, 1, generator=g).float())
    many = (torch.rand(30, 30, 3, generator=g).float(), torch.randn(30, 30, 1, generator=g, dtype=F64),
            torch.rand(30, 3, generator=g).float())
    return [(*one, None), (*one, 2), (*many, 3)]


def test_tree_follows_a_plain_python_cart():
    for x, y, q, depth in tree_cases():
        ours = trees.query_path(x.double(), y, q.double(), depth)[0]
        ref = [reference_path(x[b].double(), y[b], q[b].double(), depth) for b in range(len(x))]
        untied = [b for b, (_, tied) in enumerate(ref) if not tied]
        assert len(untied) >= 0.8 * len(x)
        for b in untied:
            assert torch.allclose(ours[b], ref[b][0], atol=1e-12, rtol=0), (depth, b)


def test_tree_predictions_equal_sklearns():
    tree = pytest.importorskip("sklearn.tree")
    for x, y, q, depth in tree_cases():
        ours = trees.query_path(x.double(), y, q.double(), depth)[0][:, 0]
        for b in range(len(x)):
            if reference_path(x[b].double(), y[b], q[b].double(), depth)[1]:
                continue  # sklearn breaks exact ties by a random feature order
            model = tree.DecisionTreeRegressor(max_depth=depth, random_state=0).fit(x[b].numpy(), y[b, :, 0].numpy())
            assert float(model.predict(q[b : b + 1].numpy())[0]) == pytest.approx(float(ours[b]), abs=1e-12)


# boosting


def test_boosting_without_a_library_says_how_to_install_one(monkeypatch):
    monkeypatch.setattr(trees, "_installed", lambda module: False)
    ep = linear_episode(2, 5, 2, seed=6)
    for call in (lambda b: b.fit(None, generator=gen(0), device="cpu"), lambda b: b.predict(ep)):
        with pytest.raises(ImportError, match=r"xgboost or scikit-learn.*pip install iclbench\[trees\]"):
            call(trees.Boosting())
    with pytest.raises(ImportError, match=r"needs xgboost,.*pip install iclbench\[trees\]"):
        trees.Boosting(backend="xgboost").fit(None, generator=gen(0), device="cpu")


@pytest.mark.parametrize("backend", ["xgboost", "sklearn"])
def test_boosting_learns_a_step_function(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install iclbench[trees])")
    g = gen(7)
    x = torch.rand(8, 41, 2, generator=g)  # (B, N+1, d)
    y = (2.0 * (x[..., :1] > 0.5) - 1) + 0.5 * (x[..., 1:] > 0.3)  # (B, N+1, 1) axis-aligned steps
    ep = Episode(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1])
    boost = trees.Boosting(backend=backend, n_estimators=20)
    boost.fit(None, generator=g, device="cpu")
    assert boost.hyperparameters() == {"backend": backend}
    assert loss(predict(boost, ep), ep) < 0.2 * loss(predict(Averaging(), ep), ep)


# relu-nn


def test_relu_network_fits_a_relu_task_far_better_than_averaging():
    B, N, d, H = 32, 40, 5, 100
    g = gen(8)
    x = torch.randn(B, N + 1, d, generator=g)
    W1, W2 = torch.randn(B, d, H, generator=g), torch.randn(B, H, 1, generator=g)
    y = torch.relu(x @ W1) @ W2 * math.sqrt(2 / H)  # (B, N+1, 1) Garg's relu_2nn_regression
    ep = Episode(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1])
    c = fcb.ReluNetwork().config
    params = fcb.train_relu_nets(ep.context_x, ep.context_y, hidden=c.hidden, steps=c.steps, lr=c.lr,
                                 batch_size=c.batch_size, generator=torch.Generator().manual_seed(c.seed))
    nn_mse = float((fcb.relu_net(params, ep.context_x) - ep.context_y).pow(2).mean())
    w = torch.einsum("bno,bnd->bod", ep.context_y, ep.context_x) / N  # (B, 1, d) averaging's weights
    avg_mse = float((torch.einsum("bod,bnd->bno", w, ep.context_x) - ep.context_y).pow(2).mean())
    assert nn_mse < 0.05 * avg_mse, (nn_mse, avg_mse)
    # the learner trains the same networks (same seed) and applies them to the query
    assert torch.allclose(predict(fcb.ReluNetwork(), ep), fcb.relu_net(params, ep.query_x[:, None])[:, 0])


# bayes-ridge


@pytest.mark.parametrize("N", [4, 12])
def test_bayes_ridge_is_ridge_with_lambda_sigma2_over_tau2(N):
    ep = linear_episode(50, N, 8, seed=9, dy=2, noise=0.3)
    sigma, tau = 0.3, 1.5
    lam = sigma**2 / tau**2
    X, Y = ep.context_x, ep.context_y
    W = torch.linalg.solve(X.transpose(1, 2) @ X + lam * torch.eye(8, dtype=F64), X.transpose(1, 2) @ Y)  # (B, d, dy)
    expected = torch.einsum("bd,bdo->bo", ep.query_x, W)
    pred = predict(bayes_optimal.BayesRidge(noise_std=sigma, prior_std=tau), ep)
    assert torch.allclose(pred, expected, atol=1e-10, rtol=0)
    assert torch.allclose(pred, predict(Ridge(lam=lam / N), ep), atol=1e-10, rtol=0)  # ridge's lambda is per point
    noiseless = predict(bayes_optimal.BayesRidge(noise_std=0.0, prior_std=tau), ep)
    assert torch.allclose(noiseless, predict(LeastSquares(), ep), atol=1e-10, rtol=0)


def test_bayes_ridge_beats_least_squares_on_its_own_prior():
    ep = linear_episode(3000, 8, 8, seed=10, noise=0.5)  # N = d: least squares' worst case
    bayes = loss(predict(bayes_optimal.BayesRidge(noise_std=0.5, prior_std=1.0), ep), ep)
    assert bayes < 0.5 * loss(predict(LeastSquares(), ep), ep)
    for lam in (0.01, 1.0):  # and any other ridge
        assert bayes < loss(predict(Ridge(lam=lam), ep), ep)


def test_bayes_ridge_reads_sigma_and_tau_from_the_training_task(catalog):
    learner = bayes_optimal.BayesRidge()
    learner.fit(catalog.tasks["linear-regression"]({"noise_std": 0.3, "teacher_scale": 2.0}), generator=gen(0), device="cpu")
    assert learner.hyperparameters() == {"noise_std": 0.3, "prior_std": 2.0}
    with pytest.raises(ValueError, match="noise_std is not set"):
        bayes_optimal.BayesRidge().fit(object(), generator=gen(0), device="cpu")


# dmmse


class PoolTask:
    """The least a task must offer dmmse: `task_pool(device)` and a config with noise_std."""

    name = "pool-test"

    def __init__(self, pool, noise_std=0.0):
        self.pool, self.config = pool, type("Config", (), {"noise_std": noise_std})()

    def task_pool(self, device):
        return self.pool.to(device)


def fitted_dmmse(pool, noise_std, **config):
    learner = bayes_optimal.DiscreteMMSE(**config)
    learner.fit(PoolTask(pool, noise_std), generator=gen(0), device="cpu")
    return learner


def test_dmmse_identifies_the_task_from_few_noiseless_points():
    pool = torch.randn(16, 8, generator=gen(11), dtype=F64)  # (P, d)
    ep = linear_episode(200, 4, 8, seed=12, pool=pool[:, None])  # N < d: least squares cannot
    dmmse = fitted_dmmse(pool, 0.0)
    assert dmmse.hyperparameters() == {"noise_std": 0.0, "pool_size": 16}
    assert loss(predict(dmmse, ep), ep) < 1e-12
    assert loss(predict(LeastSquares(), ep), ep) > 0.1


def test_dmmse_beats_bayes_ridge_on_its_own_prior():
    pool = torch.randn(8, 1, 8, generator=gen(13), dtype=F64)  # (P, dy, d)
    ep = linear_episode(2000, 4, 8, seed=14, noise=0.5, pool=pool)
    dmmse = loss(predict(fitted_dmmse(pool, 0.5), ep), ep)
    assert dmmse < 0.8 * loss(predict(bayes_optimal.BayesRidge(noise_std=0.5, prior_std=1.0), ep), ep)


def test_dmmse_streams_the_pool_with_a_stable_log_sum_exp(monkeypatch):
    pool = torch.randn(50, 6, generator=gen(15), dtype=F64)
    ep = linear_episode(30, 20, 6, seed=16, noise=0.01, pool=pool[:, None])  # sharp posterior: exp underflows
    whole = predict(fitted_dmmse(pool, 0.01), ep)
    monkeypatch.setattr(bayes_optimal, "CHUNK_ELEMENTS", 1)  # one pool member at a time
    assert torch.isfinite(whole).all()
    assert torch.allclose(predict(fitted_dmmse(pool, 0.01), ep), whole, atol=1e-12, rtol=0)


def test_dmmse_needs_a_task_with_a_pool(linear):
    with pytest.raises(TypeError, match=r"task_pool\(device\).*'linear-regression'"):
        bayes_optimal.DiscreteMMSE().fit(linear, generator=gen(0), device="cpu")
