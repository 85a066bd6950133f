"""Function-class baselines of Garg et al. (2022) and Bayes-optimal predictors, batched over tasks.

`lasso` (sparse linear) and `relu-nn` (two-layer ReLU networks) live here; `tree` and
`boosting` in `iclbench_plugins.learners.trees`: the reference code's baselines (dtsip/in-context-learning,
src/models.py; least squares, kNN and averaging are in `least_squares` and `baselines`).
`bayes-ridge` and `dmmse`, in `iclbench_plugins.learners.bayes_optimal`, are the posterior means for a
Gaussian and a finite discrete prior over linear task weights (Raventos et al. 2023). This
module's hook registers all six.
"""

from __future__ import annotations

import math
import warnings

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import compute_seconds, grid_search, task_losses, TaskShape, TunedLearner, Workload

GARG_LASSO_ALPHAS = [1.0, 0.1, 0.01, 0.001, 0.0001]  # get_relevant_baselines("sparse_linear_regression")


def lasso_weights(X: torch.Tensor, Y: torch.Tensor, alpha: float, *, tol: float = 1e-8,
                  iterations: int = 100_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per task, W (B, d, dy) minimising 1/(2N) ||Y - X W||^2 + alpha ||W||_1 (sklearn's Lasso
    without intercept), and each task's final KKT residual (B,).

    FISTA with step 1/L (L: the largest eigenvalue of X^T X / N, per task) and gradient-based
    adaptive restart (O'Donoghue & Candes 2015). FISTA finds the support and signs long before
    it converges, so every 25 iterations each task is also solved exactly on the current support
    and signs (`lasso_polish`); a task keeps whichever of the two satisfies the KKT conditions
    better. It stops once every task's KKT residual (the sup norm of the smallest subgradient of
    the objective) is at most `tol`, or after `iterations` (with a warning); finished tasks leave
    the batch. Float64, no autograd.
    """
    with torch.no_grad():
        X, Y = X.double(), Y.double()
        N = X.shape[1]
        G = X.transpose(1, 2) @ X / N  # (B, d, d)
        c = X.transpose(1, 2) @ Y / N  # (B, d, dy)
        L = torch.linalg.eigvalsh(G)[:, -1].clamp(min=1e-12)[:, None, None]  # (B, 1, 1) gradient's Lipschitz constant
        W = torch.zeros_like(c)  # (A, d, dy) iterates of the A tasks still running (all B at first)
        Z, t = W, torch.ones_like(L)  # extrapolated point and momentum counter, per task
        best, kkt = W.clone(), lasso_kkt(G, c, W, alpha)  # (B, d, dy), (B,) best solution so far
        act = torch.arange(len(kkt), device=X.device)  # (A,) tasks still running
        for k in range(iterations):
            V = Z - (G @ Z - c) / L  # (A, d, dy) gradient step from Z
            W_new = V.sign() * (V.abs() - alpha / L).clamp(min=0)  # soft threshold: the L1 prox
            restart = ((Z - W_new) * (W_new - W)).sum((1, 2), keepdim=True) > 0  # (A, 1, 1) momentum points uphill
            t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            beta = torch.where(restart, 0.0, (t - 1) / t_new)  # (A, 1, 1)
            t = torch.where(restart, 1.0, t_new)
            Z, W = W_new + beta * (W_new - W), W_new
            if k % 25 == 24 or k == iterations - 1:
                for cand in (W, lasso_polish(G, c, W, alpha)):
                    kc = lasso_kkt(G, c, cand, alpha).nan_to_num(torch.inf)  # (A,)
                    better = kc < kkt[act]  # (A,)
                    best[act] = torch.where(better[:, None, None], cand, best[act])
                    kkt[act] = torch.where(better, kc, kkt[act])
                keep = kkt[act] > tol  # (A,) tasks not done yet
                if not bool(keep.any()):
                    break
                if not bool(keep.all()):  # drop finished tasks: stragglers then iterate cheaply
                    act, G, c, L, W, Z, t = (v[keep] for v in (act, G, c, L, W, Z, t))
        if float(kkt.max()) > tol:
            warnings.warn(f"lasso: {int((kkt > tol).sum())} of {len(kkt)} tasks did not reach KKT residual "
                          f"{tol:g} in {iterations} iterations (largest {float(kkt.max()):.3g})", stacklevel=2)
    return best, kkt


def lasso_polish(G: torch.Tensor, c: torch.Tensor, W: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B, d, dy) exact lasso solution if W (B, d, dy) has the optimum's support S and signs s:
    W_S = G_SS^-1 (c_S - alpha s_S), 0 elsewhere. Singular systems give non-finite entries."""
    m = (W != 0).transpose(1, 2).to(G.dtype)  # (B, dy, d) support of each output's weights
    eye = torch.eye(G.shape[1], dtype=G.dtype, device=G.device)
    A = G[:, None] * m[..., :, None] * m[..., None, :] + eye * (1 - m)[..., None]  # (B, dy, d, d) G_SS, identity off S
    rhs = m * (c - alpha * W.sign()).transpose(1, 2)  # (B, dy, d)
    sol, _ = torch.linalg.solve_ex(A, rhs[..., None])  # (B, dy, d, 1); info ignored: checked by the KKT residual
    return sol[..., 0].transpose(1, 2)


def lasso_kkt(G: torch.Tensor, c: torch.Tensor, W: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B,) sup norm of the smallest subgradient of the lasso objective at W: 0 iff optimal.
    G (B, d, d) = X^T X / N, c (B, d, dy) = X^T Y / N, W (B, d, dy)."""
    g = G @ W - c  # (B, d, dy) gradient of the smooth part
    viol = torch.where(W != 0, (g + alpha * W.sign()).abs(), (g.abs() - alpha).clamp(min=0))  # (B, d, dy)
    return viol.flatten(1).amax(1)


class Lasso(TunedLearner):
    """L1-regularised least squares per task (Garg et al.'s LassoModel: sklearn's Lasso,
    fit_intercept=False, max_iter=100000, alpha in {1, 0.1, 0.01, 0.001, 0.0001}). alpha is
    fixed, or picked from `alphas` by the query loss on training tasks."""

    name = "lasso"
    tuned = ("alpha",)

    class Config(iclbench.LearnerConfig):
        alpha: float | None = Field(None, ge=0, description="fixed L1 weight (sklearn's scale); None: tuned")
        alphas: list[float] = Field(default_factory=lambda: list(GARG_LASSO_ALPHAS), min_length=1,
                                    description="grid tried when alpha is None (Garg's five values)")
        tune_tasks: int = Field(1024, ge=1, description="training tasks alpha is tuned on")
        iterations: int = Field(100_000, ge=1, description="FISTA iterations at most (Garg: max_iter)")
        tol: float = Field(1e-8, gt=0, description="stop when every task's KKT residual is below this")

    def _predict(self, episode: iclbench.Episode, alpha: float) -> torch.Tensor:
        W, _ = lasso_weights(episode.context_x, episode.context_y, alpha, tol=self.config.tol,
                             iterations=self.config.iterations)  # (B, d, dy)
        return torch.einsum("bd,bdo->bo", episode.query_x.double(), W).to(episode.query_x.dtype)

    def tune(self, episode: iclbench.Episode, free: list[str]) -> dict:
        return grid_search(({"alpha": a} for a in self.config.alphas),
                           lambda c: float(task_losses(self._predict(episode, c["alpha"]), episode.query_y).mean()))

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        self.require_tuned()
        return self._predict(episode, self.alpha)

    def workload(self, shape: TaskShape, n_tasks: int, batch_size: int, dtype_bytes: int) -> Workload:
        """A few (d, d) and (d, dy) float64 tensors per task; at most `iterations` FISTA steps."""
        d, dy, its = shape.dx, shape.dy, self.config.iterations
        per_task = 8 * (2 * d * d + shape.n_context * d + 8 * d * dy)
        runs = [(n_tasks, batch_size)] + ([] if self.alpha is not None else
                                          [(self.config.tune_tasks, self.config.tune_tasks)] * len(self.config.alphas))
        seconds = sum(compute_seconds(its * n * 4 * d * d * dy, its * 15 * -(-n // b), its * n * 8 * d * dy)
                      for n, b in runs)
        tasks = max(batch_size, self.config.tune_tasks if self.alpha is None else 0)
        return Workload(tasks * per_task, seconds, f"iterations={its} x {tasks} tasks x dx={d}")


def relu_net(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(B, M, dy) outputs of B two-layer ReLU networks on x (B, M, d); params W1 (B, d, H),
    b1 (B, 1, H), W2 (B, H, dy), b2 (B, 1, dy)."""
    W1, b1, W2, b2 = params
    return torch.relu(x @ W1 + b1) @ W2 + b2


def train_relu_nets(X: torch.Tensor, Y: torch.Tensor, *, hidden: int, steps: int, lr: float,
                    batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One network per task, trained by Adam on its context X (B, N, d), Y (B, N, dy).

    Initialised as torch's nn.Linear (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    Each step uses the same random `batch_size` context points in every task (all of them
    when N <= batch_size), as Garg et al.'s GDModel does. The loss is each task's MSE summed
    over tasks, so a task's gradient is its own (Garg's mean over tasks divides all by B,
    which Adam ignores up to its eps). Adam's state is elementwise, hence per task.
    """
    B, N, d = X.shape
    opts = dict(dtype=X.dtype, device=X.device)

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        u = torch.rand(B, *shape, generator=generator, **opts)  # (B, *shape)
        return ((2 * u - 1) / math.sqrt(fan_in)).requires_grad_(True)

    params = [uniform(d, hidden, fan_in=d), uniform(1, hidden, fan_in=d),
              uniform(hidden, Y.shape[2], fan_in=hidden), uniform(1, Y.shape[2], fan_in=hidden)]
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randperm(N, generator=generator, device=X.device)[:batch_size]  # (b,) shared by all tasks
            loss = (relu_net(params, X[:, idx]) - Y[:, idx]).pow(2).mean((1, 2)).sum()  # sum of (B,) task MSEs
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [p.detach() for p in params]


class ReluNetwork(iclbench.Learner):
    """A two-layer ReLU network trained by Adam on each task's context (Garg et al.'s GDModel
    for relu_2nn_regression: hidden 100, Adam, lr 5e-3, 100 steps, batches of 100 points)."""

    name = "relu-nn"

    class Config(iclbench.LearnerConfig):
        hidden: int = Field(100, ge=1, description="hidden width")
        steps: int = Field(100, ge=1, description="Adam steps")
        lr: float = Field(5e-3, gt=0)
        batch_size: int = Field(100, ge=1, description="context points per step")
        seed: int = Field(0, description="seeds the initialisation and the batches of each predict call")

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        c = self.config
        gen = torch.Generator(device=episode.device).manual_seed(c.seed)
        params = train_relu_nets(episode.context_x.detach(), episode.context_y.detach(), hidden=c.hidden,
                                 steps=c.steps, lr=c.lr, batch_size=c.batch_size, generator=gen)
        return relu_net(params, episode.query_x[:, None])[:, 0]  # (B, dy), differentiable in query_x

    def workload(self, shape: TaskShape, n_tasks: int, batch_size: int, dtype_bytes: int) -> Workload:
        """Per task: parameters with Adam's two moments and gradients, and the hidden activations."""
        H, d, dy, M = self.config.hidden, shape.dx, shape.dy, min(self.config.batch_size, shape.n_context)
        params = d * H + H + H * dy + dy
        elems = 4 * params + 3 * M * H + M * (d + dy)
        flops = 6 * M * H * (d + dy) + 12 * params
        return Workload(batch_size * elems * dtype_bytes,
                        compute_seconds(n_tasks * self.config.steps * flops, 40 * self.config.steps
                                        * -(-n_tasks // batch_size), n_tasks * self.config.steps * elems),
                        f"hidden={H} x batch_size={batch_size} tasks")


@iclbench.hookimpl
def register_learners(register) -> None:
    for cls in (Lasso, ReluNetwork):
        register(cls)
