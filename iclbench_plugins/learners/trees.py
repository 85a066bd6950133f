"""Tree baselines of Garg et al. (2022): a greedy regression tree and gradient-boosted trees.

`tree` is CART with squared error, written in torch and batched over tasks. `boosting`
wraps xgboost (or scikit-learn's histogram boosting), an optional extra. Both are
registered by `iclbench_plugins.learners.function_class_baselines`; this module has no hook.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import compute_seconds, TaskShape, Workload

INSTALL_HINT = "pip install iclbench[trees]"


def query_path(X: torch.Tensor, Y: torch.Tensor, q: torch.Tensor, max_depth: int | None):
    """Greedy CART (squared error) on each task's context, grown along the query's path only.

    X (B, N, d), Y (B, N, dy), q (B, d). Returns the query's leaf mean (B, dy) and the path's
    splits: features (B, L) and thresholds (B, L), NaN once a task's node has become a leaf.

    CART chooses each node's split from that node's points alone, so the nodes off the
    query's root-to-leaf path never change its leaf: growing only that path gives the full
    tree's prediction at O(levels) cost instead of O(nodes). Each level evaluates every
    (feature, threshold between consecutive distinct sorted values) split of every task at
    once and keeps the one maximising |S_L|^2/n_L + |S_R|^2/n_R (label sums S), i.e. the
    least child SSE; thresholds are midpoints and x <= threshold goes left, as in sklearn.
    A node is a leaf when it is pure, has one point, has no two distinct values in any
    feature, or sits at `max_depth` (None: unlimited). Exactly tied splits, mostly features
    that cut a small node into the same two sets, go to whichever rounding favours (sklearn
    breaks them by a random feature order): the query may then land on either side.
    """
    X, Y, q = X.double(), Y.double(), q.double()
    B, N, d = X.shape
    rows = torch.arange(B, device=X.device)  # (B,)
    inside = torch.ones(B, N, dtype=torch.bool, device=X.device)  # (B, N) context points in the query's node
    n_left = torch.arange(1, N, device=X.device, dtype=X.dtype)  # (N-1,) points left of a cut after sorted point i
    features, thresholds = [], []
    for _ in range(N - 1 if max_depth is None else min(max_depth, N - 1)):  # a split removes >= 1 point from the node
        n = inside.sum(1, keepdim=True).to(X.dtype)  # (B, 1)
        xs, order = X.masked_fill(~inside[..., None], torch.inf).transpose(1, 2).sort(dim=2)  # (B, d, N), outsiders last
        ys = Y.masked_fill(~inside[..., None], 0.0)[rows[:, None, None], order]  # (B, d, N, dy) labels in sorted order
        left = ys.cumsum(2)[:, :, :-1]  # (B, d, N-1, dy) label sums of the first i+1 sorted points
        total = ys.sum(2, keepdim=True)  # (B, d, 1, dy) the node's label sum
        n_right = n[:, :, None] - n_left  # (B, 1, N-1)
        valid = (n_right >= 1) & (xs[..., 1:] > xs[..., :-1])  # (B, d, N-1) a cut between two distinct in-node values
        score = left.pow(2).sum(-1) / n_left + (total - left).pow(2).sum(-1) / n_right.clamp(min=1)  # (B, d, N-1)
        best = score.masked_fill(~valid, -torch.inf).flatten(1).argmax(1)  # (B,) first best (feature, cut)
        f, i = best // (N - 1), best % (N - 1)  # (B,), (B,)
        sq = Y.pow(2).masked_fill(~inside[..., None], 0.0).sum((1, 2))  # (B,) node sum of y^2
        sse = sq - total[:, 0, 0].pow(2).sum(-1) / n[:, 0]  # (B,) node SSE
        active = valid.flatten(1).any(1) & (sse > 1e-12 * sq)  # (B,) splittable and impure
        lo, hi = xs[rows, f, i], xs[rows, f, i + 1]  # (B,) values either side of the cut
        thr = (lo + hi) / 2
        thr = torch.where(thr == hi, lo, thr)  # rounding put the midpoint on the right value: sklearn's fix
        go_left = q[rows, f] <= thr  # (B,)
        same_side = (X[rows, :, f] <= thr[:, None]) == go_left[:, None]  # (B, N) points that follow the query
        inside = torch.where(active[:, None], inside & same_side, inside)
        features.append(torch.where(active, f.to(X.dtype), torch.nan))
        thresholds.append(torch.where(active, thr, torch.nan))
        if not bool(active.any()):
            break
    pred = (Y * inside[..., None]).sum(1) / inside.sum(1, keepdim=True)  # (B, dy) the leaf's mean label
    empty = torch.empty(B, 0, dtype=X.dtype, device=X.device)
    return pred, torch.stack(features, 1) if features else empty, torch.stack(thresholds, 1) if thresholds else empty


class DecisionTree(iclbench.Learner):
    """Greedy regression tree fitted to each task's context (Garg et al.'s DecisionTreeModel:
    sklearn's DecisionTreeRegressor, max_depth 4 or unlimited); see `query_path`."""

    name = "tree"

    class Config(iclbench.LearnerConfig):
        max_depth: int | None = Field(4, ge=1, description="levels of splits; None: until leaves are pure or single points")

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        pred, _, _ = query_path(episode.context_x, episode.context_y, episode.query_x, self.config.max_depth)
        return pred.to(episode.query_x.dtype)

    def workload(self, shape: TaskShape, n_tasks: int, batch_size: int, dtype_bytes: int) -> Workload:
        """Per level: sorted inputs, their order and labels, and prefix sums, in float64."""
        N, d, dy = shape.n_context, shape.dx, shape.dy
        levels = N - 1 if self.config.max_depth is None else min(self.config.max_depth, N - 1)
        elems = d * N * (4 + 2 * dy)
        return Workload(batch_size * elems * 8 * 2,
                        compute_seconds(n_tasks * levels * elems * 10, 30 * levels * -(-n_tasks // batch_size),
                                        n_tasks * levels * elems),
                        f"N={N} x dx={shape.dx} x batch_size={batch_size} tasks")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Boosting(iclbench.Learner):
    """Gradient-boosted regression trees fitted to each task's context by a library.

    Garg et al. use `xgboost.XGBRegressor()` with its defaults (100 trees of depth 6,
    learning rate 0.3, L2 leaf penalty 1); those are the defaults here. `backend="sklearn"`
    (or "auto" without xgboost) uses sklearn's HistGradientBoostingRegressor set to the same
    values, with leaves of one point allowed and no early stopping: close, not identical.
    A library fits one task at a time, so this learner loops over tasks (and outputs) in
    Python on the CPU: slow, unavoidable. Neither library is a dependency of iclbench:
    without one, `fit` and `predict` raise an ImportError saying how to install it.
    """

    name = "boosting"

    class Config(iclbench.LearnerConfig):
        backend: Literal["auto", "xgboost", "sklearn"] = Field("auto", description="auto: xgboost, else sklearn")
        n_estimators: int = Field(100, ge=1, description="boosting rounds (trees)")
        max_depth: int = Field(6, ge=1)
        learning_rate: float = Field(0.3, gt=0)
        reg_lambda: float = Field(1.0, ge=0, description="L2 penalty on leaf values")

    def backend(self) -> str:
        """The library to use, or an ImportError naming what to install."""
        wanted = self.config.backend
        for backend, module in (("xgboost", "xgboost"), ("sklearn", "sklearn")):
            if wanted in ("auto", backend) and _installed(module):
                return backend
        package = {"auto": "xgboost or scikit-learn", "xgboost": "xgboost", "sklearn": "scikit-learn"}[wanted]
        raise ImportError(f"learner 'boosting' needs {package}, which is not installed; "
                          f"install it with `{INSTALL_HINT}`")

    def fit(self, task, *, generator, device) -> None:
        self.backend()  # fail before any evaluation starts

    def hyperparameters(self) -> dict:
        return {"backend": self.backend()}

    def _model(self, backend: str):
        c = self.config
        if backend == "xgboost":
            import xgboost

            return xgboost.XGBRegressor(n_estimators=c.n_estimators, max_depth=c.max_depth,
                                        learning_rate=c.learning_rate, reg_lambda=c.reg_lambda, n_jobs=1)
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=c.n_estimators, max_depth=c.max_depth,
                                             learning_rate=c.learning_rate, l2_regularization=c.reg_lambda,
                                             max_leaf_nodes=None, min_samples_leaf=1, early_stopping=False)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        backend = self.backend()
        X = episode.context_x.detach().cpu().numpy()  # (B, N, d)
        Y = episode.context_y.detach().cpu().numpy()  # (B, N, dy)
        q = episode.query_x.detach().cpu().numpy()  # (B, d)
        out = torch.empty(episode.batch_size, episode.dy, dtype=torch.float64)
        for b in range(episode.batch_size):  # a library fits one task at a time
            for o in range(episode.dy):
                out[b, o] = float(self._model(backend).fit(X[b], Y[b, :, o]).predict(q[b : b + 1])[0])
        return out.to(device=episode.device, dtype=episode.query_x.dtype)


@iclbench.hookimpl
def register_learners(register) -> None:
    for cls in (DecisionTree, Boosting):
        register(cls)
