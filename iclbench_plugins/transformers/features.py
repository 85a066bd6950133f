"""Transformers with an MLP before attention do GD on deep features (von Oswald et al. 2023, Sec. 5).

Each token (x_j, y_j) becomes (E x_j, y_j) with a linear embedding E to `width`, then a residual
GELU MLP acts on the whole token (it may also write an initial guess into the y-slot; minus the
query's y-slot at that point is the model's *initial function*). Then:
- `mlp-lsa`: one trained LSA layer on those tokens;
- `mlp-gd`: the GD construction with a learned rate instead, i.e. one GD step on the learned
  features from the learned initial function; embedding, MLP and rate are meta-trained.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

import iclbench
from iclbench.plugin_api import TaskShape, TrainConfig
from iclbench_plugins.transformers.lsa import TransformerLearner
from iclbench_plugins.transformers.nn.model import MLP, InContextTransformer, tokens
from iclbench_plugins.transformers.nn.stackable import Linear


class DeepFeatureModel(nn.Module):
    """Embedding + residual MLP per token, then LSA (`gd=False`) or one GD step (`gd=True`).

    `predict` never forms the context tokens' features: attention reads them only through
    dot products with one query-side vector per task and a weighted sum over the context, and
    both pass through the MLP's linear output layer. So the output layer runs on the query
    alone, and the first layer folds the embedding in (its input is the raw (x, y), a few
    numbers). Exact; `features` is the plain path, kept for analyses and tests.
    """

    def __init__(self, dx: int, dy: int, width: int, gd: bool, attention_init: float) -> None:
        super().__init__()
        self.dx, self.dy, self.width = dx, dy, width
        self.embed = Linear(dx, width)
        self.mlp = MLP(width + dy, init_scale=1.0)
        if gd:
            self.eta = nn.Parameter(torch.tensor(1.0))
            self.lsa = None
        else:
            self.lsa = InContextTransformer(width, dy, 1, 1, "linear", False, False, False, None, attention_init)

    def features(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, N+1, width+dy) tokens after embedding and MLP."""
        z = tokens(self.embed(episode.context_x), episode.context_y, self.embed(episode.query_x))
        return z + self.mlp(z)

    def initial(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, dy) the initial function: the prediction read out before attention."""
        return -self.features(episode)[:, -1, self.width:]

    def hidden(self, u: torch.Tensor) -> torch.Tensor:
        """(..., 4D) the MLP's hidden activations for raw tokens u = (x, y) (..., dx+dy)."""
        W, fc1 = self.width, self.mlp.fc1
        # the embedding folded in as sums of elementwise products, not matrix products with a
        # vector (the bias, or the weight when dx = 1), and no fused addmm: under vmap (stacked
        # seeds) those run as other kernels, with other bits
        w1 = torch.cat([(fc1.weight[:, :W, None] * self.embed.weight).sum(1), fc1.weight[:, W:]], 1)  # (4D, dx+dy)
        b1 = (fc1.weight[:, :W] * self.embed.bias).sum(-1) + fc1.bias  # (4D,)
        return nn.functional.gelu(u.reshape(-1, u.shape[-1]) @ w1.T + b1).reshape(*u.shape[:-1], -1)

    def dot_features(self, u: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """(B, N) f_j . r_b for context features f_j = z_j + W2 g_j + b2, without forming f_j.

        u (B, N, dx+dy) raw tokens, g (B, N, 4D) their hidden activations, r (B, D)."""
        W, fc2 = self.width, self.mlp.fc2
        # (B, dx): z_j . r = x_j . E^T r_x + y_j . r_y + e_b . r_x; summed products, as dx may be 1 (below)
        to_x = (r[:, :W, None] * self.embed.weight).sum(1)
        s = u[..., : self.dx] @ to_x[:, :, None] + u[..., self.dx:] @ r[:, W:, None]  # (B, N, 1)
        s = s + (g * (r @ fc2.weight)[:, None, :]).sum(-1, keepdim=True)  # (B, N, 1) + g_j . W2^T r; beats bmm on CPU
        # products with the bias vectors as sums of elementwise products: under vmap (stacked
        # seeds) a matrix-vector product runs as a batched matrix product, with other bits
        bias = (r[:, :W] * self.embed.bias).sum(-1) + (r * fc2.bias).sum(-1)  # (B,)
        return s[..., 0] + bias[:, None]  # (B, N)

    def sum_features(self, u: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """(B, D) sum_j s_bj f_j, without forming f_j. s (B, N) weights."""
        su = (s[:, None, :] @ u)[:, 0]  # (B, dx+dy)
        sg = (s[:, None, :] @ g)[:, 0]  # (B, 4D)
        total = s.sum(1, keepdim=True)  # (B, 1)
        zx = (su[:, : self.dx, None] * self.embed.weight.T).sum(1) + total * self.embed.bias  # (B, W); dx may be 1
        return torch.cat([zx, su[:, self.dx:]], 1) + sg @ self.mlp.fc2.weight.T + total * self.mlp.fc2.bias

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        W, N = self.width, episode.n_context
        u = torch.cat([episode.context_x, episode.context_y], -1)  # (B, N, dx+dy) raw context tokens
        g = self.hidden(u)  # (B, N, 4D)
        zq = torch.cat([self.embed(episode.query_x), episode.query_x.new_zeros(episode.batch_size, self.dy)], 1)
        fq = zq + self.mlp(zq)  # (B, D) the query's features, the only ones formed
        if self.lsa is None:  # one GD step: y_q = -(r_q - eta/N sum_j Y_j (F_j . F_q))
            d = self.dot_features(u, g, torch.cat([fq[:, :W], fq.new_zeros(fq.shape[0], self.dy)], 1))  # (B, N)
            return -(fq[:, W:] - self.eta / N * self.sum_features(u, g, d)[:, W:])
        a = self.lsa.blocks[0].attn  # one head: e_q + P W_V (1/N) sum_j f_j (f_j . W_K^T W_Q e_q)
        r = fq @ a.W_Q[0].T @ a.W_K[0] / N  # (B, D)
        out = self.sum_features(u, g, self.dot_features(u, g, r)) @ a.W_V[0].T @ a.P[0].T  # (B, D)
        return -(fq + out)[:, W:]

    def predict_explicit(self, episode: iclbench.Episode) -> torch.Tensor:
        """`predict` computed on fully formed features (the plain path)."""
        z = self.features(episode)  # (B, N+1, W+dy)
        if self.lsa is not None:
            return self.lsa(z, episode.n_context)
        F, Y = z[:, :-1, : self.width], z[:, :-1, self.width:]  # (B, N, W), (B, N, dy)
        fq, rq = z[:, -1, : self.width], z[:, -1, self.width:]  # (B, W), (B, dy)
        dW = self.eta / episode.n_context * torch.einsum("bno,bnw->bow", Y, F)  # (B, dy, W) one GD step
        return -(rq - torch.einsum("bow,bw->bo", dW, fq))


class MLPLSA(TransformerLearner):
    """Embedding (to `width`) and a residual GELU MLP, then a trained LSA layer."""

    name = "mlp-lsa"
    gd = False

    class Config(iclbench.LearnerConfig):
        width: int = Field(40, ge=1, description="embedding width")
        init_scale: float | None = Field(None, gt=0, description="LSA init variance scale; None: 0.002")
        train: TrainConfig = Field(default_factory=TrainConfig)

    def monitors(self) -> dict:
        return {}

    def build_model(self, dx: int, dy: int, extra_dim: int = 0) -> DeepFeatureModel:
        return DeepFeatureModel(dx, dy, self.config.width, self.gd, self.config.init_scale or 0.002)

    def model_cost(self, shape: TaskShape) -> tuple[float, float, float, str]:
        """`DeepFeatureModel.predict`: the MLP's (N, 4D) hidden activations of the context, twice
        more for the products with them, and the query's features."""
        N, dxy, W = shape.n_context, shape.dx + shape.dy, self.config.width
        D = W + shape.dy
        elems = N * (dxy + 16 * D) + 12 * D
        flops = 8 * N * D * dxy + 32 * N * D + 36 * D * D
        params = 12 * D * D + W * (shape.dx + 1) + 5 * D
        return elems, flops, params, f"width={W} x N={N}"


class MLPGD(MLPLSA):
    """The same embedding and MLP meta-trained through one GD step (learned rate) on their features."""

    name = "mlp-gd"
    gd = True


@iclbench.hookimpl
def register_learners(register) -> None:
    register(MLPLSA)
    register(MLPGD)
