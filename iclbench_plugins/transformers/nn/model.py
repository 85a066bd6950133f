"""The in-context Transformer: tokens e_j = (x_j, y_j), query (x, 0), residual attention layers.

Keys and values come from the N context tokens only; queries from every token that is
updated; the prediction is minus the query's y-entry after the last layer. Linear self-
attention (LSA) averages over the N keys, so one layer with the Proposition 1 weights is
one GD step for any context size. Since only the query is read out, the last layer updates
the query token alone: exact, and it saves most of a one-layer model's work.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from iclbench_plugins.transformers.nn.stackable import LayerNorm, Linear


def tokens(context_x: torch.Tensor, context_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
    """(B, N+1, dx+dy) token matrix: context (x_j, y_j), then the query (x, 0)."""
    B, N, dx = context_x.shape
    z = context_x.new_zeros(B, N + 1, dx + context_y.shape[-1])  # filled in place: cheaper than cat
    z[:, :N, :dx] = context_x
    z[:, :N, dx:] = context_y
    z[:, N, :dx] = query_x
    return z


def variance_scaling_(w: torch.Tensor, scale: float, fan_in: int) -> torch.Tensor:
    """Fan-in truncated-normal init (variance scale/fan_in, cut at 2 std), as Haiku's VarianceScaling."""
    std = math.sqrt(scale / fan_in) / 0.87962566103423978  # undo the truncation's variance loss
    with torch.no_grad():
        return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def task_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for a (B, m, k) batch of per-task operands and b (B, k, n), or a shared (k, n).

    m, k, n are a few tokens or features. Eagerly, and on a GPU, a plain matmul. Compiled on a
    CPU, a broadcast product summed over k, a shared b expanded to every task: inductor fuses it
    into one loop over the tasks, and the gradient of a shared b into per-task sums then one
    sum over tasks. With its backward that is about 2x faster than the batched or tall-skinny
    BLAS calls matmul makes for these shapes. Same numbers either way, up to rounding.
    """
    if a.device.type == "cpu" and torch.compiler.is_compiling():
        b = b.expand(a.shape[0], *b.shape) if b.dim() == 2 else b  # (B, k, n)
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)  # (B, m, k, n) summed over k
    return a @ b


def always_clamp(z: torch.Tensor) -> bool:
    """Whether a clip must be applied without first testing if it changes anything: compiled
    (no data-dependent branches) or inside torch.func.vmap (stacked seeds). Where no value is
    beyond the bound, clamping is the identity, its gradient too, so either way gives the same bits."""
    return torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(z)


class Attention(nn.Module):
    """H heads with square W_Q, W_K, W_V and projection P, all (H, D, D).

    Computed through the per-head products W_KQ = W_K^T W_Q and W_PV = P W_V, which are all
    the layer depends on: the score of context token e_n for target e_t is e_n . W_KQ e_t
    (over N for linear attention, over sqrt(D) before a softmax), and the update is
    W_PV sum_n score_n e_n. Keys and values are never projected, and linear and softmax
    attention differ only in the softmax.
    """

    def __init__(self, dim: int, heads: int, kind: Literal["linear", "softmax"], init_scale: float) -> None:
        super().__init__()
        self.kind, self.heads, self.dim = kind, heads, dim
        self.W_Q, self.W_K, self.W_V, self.P = (nn.Parameter(torch.empty(heads, dim, dim)) for _ in range(4))
        for w in (self.W_Q, self.W_K, self.W_V, self.P):
            variance_scaling_(w, init_scale, dim)

    def products(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_KQ, W_PV) = (W_K^T W_Q, P W_V) per head, each (H, D, D)."""
        return self.W_K.transpose(1, 2) @ self.W_Q, self.P @ self.W_V

    def forward(self, ctx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Update (B, T, D) for `targets` (B, T, D) attending to context tokens `ctx` (B, N, D)."""
        B, T, D = targets.shape
        H, N = self.heads, ctx.shape[1]
        kq, pv = self.products()  # (H, D, D) each
        kq = kq / (N if self.kind == "linear" else math.sqrt(D))  # scores over N, or before the softmax
        q = task_matmul(targets, kq.reshape(H * D, D).T).reshape(B, T * H, D)  # (B, T*H, D): row (t, h) = W_KQ,h e_t
        scores = task_matmul(q, ctx.transpose(1, 2))  # (B, T*H, N)
        if self.kind == "softmax":
            scores = torch.softmax(scores, dim=-1)
        s = task_matmul(scores, ctx).reshape(B, T, H * D)  # (B, T, H*D): per head, sum_n score_n e_n
        return task_matmul(s, pv.transpose(1, 2).reshape(H * D, D))  # (B, T, D) = sum_h W_PV,h s_h


class MLP(nn.Module):
    """Residual-branch GELU MLP of width 4 D."""

    def __init__(self, dim: int, init_scale: float) -> None:
        super().__init__()
        self.fc1, self.fc2 = Linear(dim, 4 * dim), Linear(4 * dim, dim)
        for lin in (self.fc1, self.fc2):
            variance_scaling_(lin.weight, init_scale, lin.in_features)
            nn.init.zeros_(lin.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(z)))


class Block(nn.Module):
    """Optional pre-attention LayerNorm, residual attention, optional residual MLP."""

    def __init__(self, dim: int, heads: int, kind: str, layernorm: bool, mlp: bool, init_scale: float) -> None:
        super().__init__()
        self.norm = LayerNorm(dim) if layernorm else None
        self.attn = Attention(dim, heads, kind, init_scale)
        self.mlp = MLP(dim, init_scale) if mlp else None

    def forward(self, z: torch.Tensor, n_context: int, query_only: bool) -> torch.Tensor:
        h = self.norm(z) if self.norm is not None else z
        targets = h[:, -1:] if query_only else h  # (B, T, D), T = 1 or N+1
        z = (z[:, -1:] if query_only else z) + self.attn(h[:, :n_context], targets)
        if self.mlp is not None:
            z = z + self.mlp(z)
        return z


class InContextTransformer(nn.Module):
    """K blocks (or one block applied K times if `recurrent`) on the token matrix.

    `token_format` "pairs": tokens (x_j, y_j), keys from the N context tokens.
    `token_format` "alternating": the task's alternating tokens (x-slot, y-slot, position),
    every token a key, so a label token can be attended to by the x token before it.
    `kind` is one attention kind for every layer or a list with one per layer.
    """

    def __init__(self, dx: int, dy: int, layers: int, heads: int, kind: str | list[str], recurrent: bool,
                 layernorm: bool, mlp: bool, clip: float | None, init_scale: float,
                 token_format: str = "pairs", extra_dim: int = 0) -> None:
        super().__init__()
        self.dx, self.dy, self.layers, self.clip, self.token_format = dx, dy, layers, clip, token_format
        n_blocks = 1 if recurrent else layers
        kinds = [kind] * n_blocks if isinstance(kind, str) else list(kind)
        if len(kinds) != n_blocks:
            raise ValueError(f"{len(kinds)} attention kinds given for {n_blocks} layers")
        dim = dx + dy + extra_dim
        self.blocks = nn.ModuleList(Block(dim, heads, k, layernorm, mlp, init_scale) for k in kinds)

    def block(self, k: int) -> Block:
        return self.blocks[k % len(self.blocks)]

    def forward(self, z: torch.Tensor, n_context: int, steps: int | None = None) -> torch.Tensor:
        """Run `steps` (default K) layers on tokens `z` (B, N+1, D); returns the (B, dy) prediction."""
        steps = self.layers if steps is None else steps
        for k in range(steps):
            z = self.block(k)(z, n_context, query_only=k == steps - 1)
            if self.clip is not None and (always_clamp(z) or bool(z.abs().amax() > self.clip)):
                z = z.clamp(-self.clip, self.clip)  # skipped in eager mode where it is the identity
        return -z[:, -1, self.dx:self.dx + self.dy]

    def token_sequence(self, episode) -> tuple[torch.Tensor, int]:
        """The (B, T, D) tokens this model reads from `episode`, and how many of them are keys."""
        if self.token_format == "pairs":
            return tokens(episode.context_x, episode.context_y, episode.query_x), episode.n_context
        if episode.token_format != self.token_format:
            raise ValueError(f"this model reads {self.token_format!r} tokens, but the episode has "
                             f"{episode.token_format or 'plain pairs'}; use a task such as 'alternating'")
        return episode.tokens, episode.tokens.shape[1]

    def predict(self, episode, steps: int | None = None) -> torch.Tensor:
        """(B, dy) prediction for an Episode."""
        z, n_keys = self.token_sequence(episode)
        return self(z, n_keys, steps)
