"""The function classes of Garg et al. 2022, "What can Transformers learn in-context?".

Laws follow the reference code (github dtsip/in-context-learning, src/tasks.py, src/samplers.py,
src/eval.py `build_evals`): d = 20, N = 40 context points (Garg trains with 2d + 1 = 41 points,
the last one is our query), dy = 1, x ~ N(0, I_d).

- `garg-linear`: y = w.x, w ~ N(0, I_d), with Garg's variants (noisy, sparse, quadratic,
  classification), the OOD input laws and prompts of `build_evals`, and a finite task pool
  (Raventos et al. 2023).
- `garg-relu`: a random two-layer ReLU network (Relu2nnRegression).
- `garg-tree`: a random depth-4 decision tree on coordinate signs (DecisionTree).

Every task is sampled vectorised over the B tasks; the only loops run over tree depth.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import OPTIONAL, TaskShape


class GargConfig(iclbench.TaskConfig):
    """What every family shares: context size and input dimension (dy is always 1)."""

    N: int = Field(40, ge=1, description="context size (Garg's 2d + 1 = 41 points, the last one the query)")
    d: int = Field(20, ge=1, description="input dimension")


def gaussian_inputs(n: int, c: GargConfig, generator: torch.Generator, device) -> torch.Tensor:
    """(B, N+1, d) inputs x ~ N(0, I_d), the query last."""
    return torch.randn(n, c.N + 1, c.d, generator=generator, device=device)


def episode(x: torch.Tensor, y: torch.Tensor) -> iclbench.Episode:
    """Split (B, N+1, d) inputs and (B, N+1) labels into context and query (dy = 1)."""
    return iclbench.Episode(x[:, :-1], y[:, :-1, None], x[:, -1], y[:, -1:])


def garg_shape(c: GargConfig, extra: int) -> TaskShape:
    """N pairs of (d, 1); sampling holds `extra` numbers per task besides, and every task's
    N + 1 inputs and labels once more."""
    return TaskShape(c.N, c.d, 1, extra=extra + (c.N + 1) * (c.d + 1))


def haar_orthogonal(d: int, seed: int) -> torch.Tensor:
    """(d, d) a Haar-random orthogonal matrix drawn on the CPU from `seed` (QR, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # (d, d) columns flipped so the law is Haar


class GargLinear(iclbench.Task):
    """y = y_scale * w.x with w ~ N(0, I_d), and Garg's variants of it."""

    name = "garg-linear"

    class Config(GargConfig):
        sparsity: int | None = Field(None, ge=1, json_schema_extra=OPTIONAL, description=(
            "k: w keeps k uniformly chosen coordinates, the rest zero, unrescaled (E y^2 = k; "
            "SparseLinearRegression, Garg's k = 3)"))
        quadratic: bool = Field(False, description="y = (x^2).w / sqrt(3), so E y^2 = d (QuadraticRegression)")
        classification: bool = Field(False, description="y = sign(w.x) in {-1, 1} (LinearClassification)")
        noise_std: float = Field(0.0, ge=0, description=(
            "sigma: N(0, sigma^2) noise on every label, context and query (NoisyLinearRegression)"))
        renormalize_ys: bool = Field(False, description=(
            "scale noisy labels to E y^2 = d (NoisyLinearRegression's renormalize_ys; Garg's noisyLR "
            "eval is noise_std = 1 with this). Garg divides by the batch's std; here by its population "
            "value, so tasks stay independent"))
        x_scale: float = Field(1.0, gt=0, description="x multiplied by this (Garg's scale-x evals)")
        y_scale: float = Field(1.0, gt=0, description="y multiplied by this, i.e. w scaled (Garg's scale-y evals)")
        skew: bool = Field(False, description=(
            "x = z T, z ~ N(0, I), Cov x eigenvalues prop. to 1/i^2 with trace d, in one random basis fixed "
            "by basis_seed for all tasks (Garg's 'skewed' eval)"))
        half_subspace: bool = Field(False, description=(
            "x in one random d//2-dim subspace fixed by basis_seed for all tasks, scaled to E|x|^2 = d "
            "(Garg's 'half_subspace' eval)"))
        basis_seed: int = Field(0, ge=0, description="seed of the fixed random basis of skew / half_subspace")
        quadrants: bool = Field(False, description=(
            "context inputs folded into one random orthant per task (signs of a random sign vector), "
            "query free (Garg's 'random_quadrants')"))
        orthogonal_query: bool = Field(False, description=(
            "query projected orthogonal to the context span, then rescaled to its drawn norm; needs "
            "N < d (Garg's 'orthogonal_train_test')"))
        overlapping_query: bool = Field(False, description=(
            "query is a copy of a uniformly chosen context input (Garg's 'overlapping_train_test')"))
        num_tasks: int | None = Field(None, ge=1, json_schema_extra=OPTIONAL, description=(
            "a finite pool of this many weight vectors drawn once from pool_seed; each task picks one "
            "uniformly with replacement, inputs stay fresh (Raventos et al. 2023)"))
        pool_seed: int = Field(0, ge=0, description="seed of the task pool (num_tasks)")

        @model_validator(mode="after")
        def _check(self):
            if self.sparsity is not None and self.sparsity > self.d:
                raise ValueError(f"sparsity ({self.sparsity}) cannot exceed d ({self.d})")
            if self.skew and self.half_subspace:
                raise ValueError("skew and half_subspace are two input covariances: set at most one")
            prompts = [f for f in ("quadrants", "orthogonal_query", "overlapping_query") if getattr(self, f)]
            if len(prompts) > 1:
                raise ValueError(f"{' and '.join(prompts)} are exclusive prompt strategies: set at most one")
            if self.half_subspace and self.d < 2:
                raise ValueError(f"half_subspace needs d >= 2 (got d = {self.d})")
            rank = self.d // 2 if self.half_subspace else self.d
            if self.orthogonal_query and self.N >= rank:
                where = "d // 2 (half_subspace)" if self.half_subspace else "d"
                raise ValueError(f"orthogonal_query needs N ({self.N}) below {where} ({rank}): "
                                 "the context would span every input")
            if self.classification:
                bad = [f for f, v in (("noise_std", self.noise_std > 0), ("renormalize_ys", self.renormalize_ys),
                                      ("y_scale", self.y_scale != 1)) if v]
                if bad:
                    raise ValueError(f"classification labels are sign(w.x): {', '.join(bad)} cannot apply")
            if self.pool_seed and self.num_tasks is None:
                raise ValueError(f"pool_seed ({self.pool_seed}) has no effect without num_tasks")
            if self.basis_seed and not (self.skew or self.half_subspace):
                raise ValueError(f"basis_seed ({self.basis_seed}) has no effect without skew or half_subspace")
            return self

    def input_transform(self) -> torch.Tensor | None:
        """(d, d) symmetric T with x = z T (Garg's sample_transformation, normalised), or None."""
        c = self.config
        if not (c.skew or c.half_subspace):
            return None
        if c.skew:
            eig = 1 / torch.arange(1, c.d + 1, dtype=torch.float64)  # (d,) T's eigenvalues, Cov's are eig^2
        else:
            eig = (torch.arange(c.d) < c.d // 2).double()  # (d,) d//2 ones
        U = haar_orthogonal(c.d, c.basis_seed)  # (d, d)
        return (U * eig) @ U.T * math.sqrt(c.d / eig.pow(2).sum())  # (d, d), trace(T^T T) = d

    def input_cov(self) -> torch.Tensor:
        """(d, d) float64 covariance of the (pre-prompt) inputs."""
        c = self.config
        T = self.input_transform()
        base = torch.eye(c.d, dtype=torch.float64) if T is None else T.T @ T
        return c.x_scale ** 2 * base

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x), (..., d): noiseless labels are w.phi(x) (x, or x^2 / sqrt(3) when quadratic)."""
        return x.pow(2) / math.sqrt(3) if self.config.quadratic else x

    def task_pool(self, device) -> torch.Tensor:
        """(P, d) the finite pool's effective weights w (y_scale and sparsity included): noiseless
        labels are w.phi(x), signed when classification. For a Bayes-optimal dMMSE baseline."""
        c = self.config
        if c.num_tasks is None:
            raise ValueError(f"task {self.label!r} has no finite pool: num_tasks is unset")
        g = torch.Generator().manual_seed(c.pool_seed)
        w = torch.randn(c.num_tasks, c.d, generator=g)  # (P, d)
        if c.sparsity is not None:
            w = w * self._support(torch.rand(c.num_tasks, c.d, generator=g))  # (P, d)
        return (c.y_scale * w).to(device)

    def _support(self, u: torch.Tensor) -> torch.Tensor:
        """(B, d) 0/1 mask of `sparsity` uniformly chosen coordinates per row, from uniforms u (B, d)."""
        order = u.argsort(dim=1)  # (B, d): a uniform random permutation per row
        return torch.zeros_like(u).scatter_(1, order[:, : self.config.sparsity], 1.0)

    def weights(self, n: int, generator: torch.Generator, device) -> torch.Tensor:
        """(B, d) effective weights, y_scale included."""
        c = self.config
        if c.num_tasks is not None:
            pick = torch.randint(c.num_tasks, (n,), generator=generator, device=device)  # (B,)
            return self.task_pool(device)[pick]
        w = torch.randn(n, c.d, generator=generator, device=device)  # (B, d)
        if c.sparsity is not None:
            w = w * self._support(torch.rand(n, c.d, generator=generator, device=device))
        return c.y_scale * w

    def inputs(self, n: int, generator: torch.Generator, device) -> torch.Tensor:
        """(B, N+1, d) inputs under the configured law and prompt strategy, the query last."""
        c = self.config
        x = gaussian_inputs(n, c, generator, device)
        T = self.input_transform()
        if T is not None:
            x = x @ T.to(device=device, dtype=x.dtype)
        x = c.x_scale * x
        ctx, q = x[:, :-1], x[:, -1]  # (B, N, d), (B, d)
        if c.quadrants:
            signs = 2.0 * torch.randint(2, (n, 1, c.d), generator=generator, device=device) - 1  # (B, 1, d)
            ctx = ctx.abs() * signs
        elif c.orthogonal_query:
            Q = torch.linalg.qr(ctx.transpose(1, 2).double()).Q  # (B, d, N) orthonormal basis of the span
            qd = q.double()
            perp = qd - torch.einsum("bdn,bn->bd", Q, torch.einsum("bdn,bd->bn", Q, qd))  # (B, d)
            q = (perp * (qd.norm(dim=1) / perp.norm(dim=1))[:, None]).to(x.dtype)  # (B, d) its drawn norm
        elif c.overlapping_query:
            pick = torch.randint(c.N, (n,), generator=generator, device=device)  # (B,)
            q = ctx[torch.arange(n, device=device), pick]  # (B, d)
        return torch.cat([ctx, q[:, None]], dim=1)

    def label_power(self) -> float:
        """E[y^2] of the noiseless labels over the prior of w and the input law (before prompts)."""
        c = self.config
        cov = self.input_cov()
        k = c.d if c.sparsity is None else c.sparsity
        # linear: E_w (w.x)^2 = (k/d) E|x|^2; quadratic: E_w ((x^2).w)^2 / 3 = (k/d) sum_i E x_i^4 / 3
        per_coord = cov.diagonal().pow(2) if c.quadratic else cov.diagonal()  # (d,)
        return c.y_scale ** 2 * k / c.d * float(per_coord.sum())

    def episode_shape(self) -> TaskShape:
        """Sampling also holds w and its sparsity draws (d each), and the features phi(x)."""
        c = self.config
        return garg_shape(c, 3 * c.d + (c.N + 1) * c.d)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        w = self.weights(n, generator, device)  # (B, d)
        x = self.inputs(n, generator, device)  # (B, N+1, d)
        y = torch.einsum("bd,bnd->bn", w, self.features(x))  # (B, N+1)
        if c.classification:
            y = torch.sign(y)
        if c.noise_std > 0:
            y = y + c.noise_std * torch.randn(y.shape, generator=generator, device=device)
        if c.renormalize_ys:
            y = y * math.sqrt(c.d / (self.label_power() + c.noise_std ** 2))
        return episode(x, y)


    def scores(self, pred: torch.Tensor, episode: iclbench.Episode) -> dict[str, torch.Tensor]:
        """Classification tasks: the accuracy of the prediction's sign (Garg's metric), per task."""
        if not self.config.classification:
            return {}
        return {"accuracy": (torch.sign(pred[:, 0]) == torch.sign(episode.query_y[:, 0])).double()}  # (B,)


class GargRelu(iclbench.Task):
    """y = sqrt(2 / h) * v.relu(W x), W (h, d) and v (h,) ~ N(0, 1): E y^2 = d (Relu2nnRegression)."""

    name = "garg-relu"

    class Config(GargConfig):
        hidden: int = Field(100, ge=1, description="hidden units h; output scaled by sqrt(2 / h)")

    def episode_shape(self) -> TaskShape:
        """Sampling also holds the network, W1 (d x h) and v (h), and the hidden units of every input."""
        c = self.config
        return garg_shape(c, c.d * c.hidden + c.hidden + 2 * (c.N + 1) * c.hidden)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        W1 = torch.randn(n, c.d, c.hidden, generator=generator, device=device)  # (B, d, h)
        W2 = torch.randn(n, c.hidden, generator=generator, device=device)  # (B, h)
        x = gaussian_inputs(n, c, generator, device)  # (B, N+1, d)
        hidden = torch.relu(x @ W1)  # (B, N+1, h)
        y = math.sqrt(2 / c.hidden) * torch.einsum("bnh,bh->bn", hidden, W2)  # (B, N+1)
        return episode(x, y)


def tree_predict(coords: torch.Tensor, leaves: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate B complete binary trees on their inputs: (B, P) labels.

    coords (B, 2^depth - 1): the coordinate each internal node splits on, heap order (node i has
    children 2i+1, 2i+2); leaves (B, 2^depth): leaf values left to right; x (B, P, d).
    x[coord] > 0 goes right, as in Garg's DecisionTree.evaluate.
    """
    internal = coords.shape[1]
    node = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)  # (B, P) current node
    for _ in range(internal.bit_length()):  # depth gathers: 2^depth - 1 has depth bits
        split = coords.gather(1, node)  # (B, P) coordinate tested at each point's node
        right = x.gather(2, split[..., None])[..., 0] > 0  # (B, P)
        node = 2 * node + 1 + right.long()
    return leaves.gather(1, node - internal)  # (B, P)


class GargTree(iclbench.Task):
    """A random decision tree: each internal node splits on the sign of a coordinate drawn
    uniformly from d (repeats allowed), leaves ~ N(0, 1), unrescaled (Garg's DecisionTree)."""

    name = "garg-tree"

    class Config(GargConfig):
        depth: int = Field(4, ge=0, le=16, description="tree depth: 2^depth leaves")

    def episode_shape(self) -> TaskShape:
        """Sampling also holds the tree (2^depth - 1 nodes, 2^depth leaves) and each input's node."""
        c = self.config
        return garg_shape(c, 2 ** (c.depth + 1) + 4 * (c.N + 1))

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        coords = torch.randint(c.d, (n, 2 ** c.depth - 1), generator=generator, device=device)  # (B, nodes)
        leaves = torch.randn(n, 2 ** c.depth, generator=generator, device=device)  # (B, 2^depth)
        x = gaussian_inputs(n, c, generator, device)  # (B, N+1, d)
        return episode(x, tree_predict(coords, leaves, x))


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(GargLinear)
    register(GargRelu)
    register(GargTree)
