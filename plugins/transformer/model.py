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


class Attention(nn.Module):
    """H heads with square W_Q, W_K, W_V and projection P, all (H, D, D)."""

    def __init__(self, dim: int, heads: int, kind: Literal["linear", "softmax"], init_scale: float) -> None:
        super().__init__()
        self.kind, self.heads, self.dim = kind, heads, dim
        self.W_Q, self.W_K, self.W_V, self.P = (nn.Parameter(torch.empty(heads, dim, dim)) for _ in range(4))
        for w in (self.W_Q, self.W_K, self.W_V, self.P):
            variance_scaling_(w, init_scale, dim)

    def forward(self, ctx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Update for `targets` (B, T, D) attending to context tokens `ctx` (B, N, D)."""
        if self.kind == "linear":
            return self.linear(ctx, targets)
        B, T, D = targets.shape
        H, N = self.heads, ctx.shape[1]
        q = (targets @ self.W_Q.reshape(H * D, D).T).reshape(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = (ctx @ self.W_K.reshape(H * D, D).T).reshape(B, N, H, D).transpose(1, 2)  # (B, H, N, D)
        v = (ctx @ self.W_V.reshape(H * D, D).T).reshape(B, N, H, D).transpose(1, 2)  # (B, H, N, D)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D), dim=-1)  # (B, H, T, N)
        o = (weights @ v).transpose(1, 2).reshape(B, T, H * D)  # (B, T, H*D)
        return o @ self.P.permute(1, 0, 2).reshape(D, H * D).T  # (B, T, D) = sum_h P[h] o_h

    def linear(self, ctx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Linear attention, reassociated: (1/N) sum_j (q . k_j) v_j = A e with A = L C R.

        C = sum_j e_j e_j^T is the context tokens' second moment (B, D, D), L = sum_h P_h W_V,h
        and R = W_K,h^T W_Q,h / N the weights' products. When every token is updated, the
        per-task A comes from C by one flat product with a (D^2, D^2) matrix of weights, and the
        tokens by one batched product. When fewer rows than D are updated (the query-only last
        layer), the data enter as ctx^T (ctx r), which never forms C.
        """
        B, T, D = targets.shape
        H, N = self.heads, ctx.shape[1]
        if T * H >= D:
            L = self.P @ self.W_V  # (H, D, D)
            R = self.W_K.transpose(1, 2) @ self.W_Q / N  # (H, D, D)
            K = torch.einsum("hij,hkl->jkil", L, R).reshape(D * D, D * D)  # A[i,l] = sum_jk C[j,k] L[i,j] R[k,l]
            C = ctx.transpose(1, 2) @ ctx  # (B, D, D)
            A = (C.reshape(B, D * D) @ K).reshape(B, D, D)  # (B, D, D)
            return targets @ A.transpose(1, 2)  # (B, T, D)
        q = targets @ self.W_Q.reshape(H * D, D).T  # (B, T, H*D), head h = W_Q[h] e
        r = (q @ torch.block_diag(*self.W_K) / N).reshape(B, T * H, D)  # (B, T*H, D), head h = W_K[h]^T q_h / N
        s = ((r @ ctx.transpose(1, 2)) @ ctx).reshape(B, T, H * D)  # (B, T, H*D): (r . e_j) summed with e_j
        o = s @ torch.block_diag(*self.W_V).T  # (B, T, H*D), head h = W_V[h] s_h
        return o @ self.P.permute(1, 0, 2).reshape(D, H * D).T  # (B, T, D) = sum_h P[h] o_h


class MLP(nn.Module):
    """Residual-branch GELU MLP of width 4 D."""

    def __init__(self, dim: int, init_scale: float) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        for lin in (self.fc1, self.fc2):
            variance_scaling_(lin.weight, init_scale, lin.in_features)
            nn.init.zeros_(lin.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(z)))


class Block(nn.Module):
    """Optional pre-attention LayerNorm, residual attention, optional residual MLP."""

    def __init__(self, dim: int, heads: int, kind: str, layernorm: bool, mlp: bool, init_scale: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if layernorm else None
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
            if self.clip is not None and (torch.compiler.is_compiling() or bool(z.abs().amax() > self.clip)):
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
