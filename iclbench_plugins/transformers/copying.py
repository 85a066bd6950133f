"""Copying circuits on alternating tokens (von Oswald et al. 2023, Sec. 5, Proposition 3).

A first softmax layer lets each x token attend to the token after it and copy that token's
y-slot, so x_j's token becomes (x_j, y_j); a linear layer then does GD. Scores come from the
positional encodings: the query W_Q = beta R (R shifts an encoding by one position) meets the
key W_K = I, so token i's best match is position i + 1. Label tokens copy the next x token's
empty y-slot, and the query, which has no successor, matches itself: both copy zeros.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import compute_seconds, TAPE_FACTOR, Workload
from iclbench_plugins.tasks.alternating import FORMAT, positional_encoding, shift_matrix
from iclbench_plugins.learners.gradient_descent import GradientDescent
from iclbench_plugins.transformers.nn.constructions import gd_products
from iclbench_plugins.transformers.lsa import (LSAGD, Kind, TransformerLearner, block_parameters,
                                                   layer_cost, prediction_workload, stack_cost)
from iclbench_plugins.transformers.nn.model import InContextTransformer

MARGIN_LOGITS = 60.0  # softmax logit gap to the runner-up: leakage ~ exp(-60), far below float64 noise


def copy_sharpness(T: int, P: int) -> float:
    """beta making each token's match beat every other position by MARGIN_LOGITS logits."""
    enc = positional_encoding(T + 1, P, dtype=torch.float64)  # (T+1, P), one past the query
    sims = enc[1:] @ enc[:T].T  # (T, T): sims[i, j] = enc(i+1) . enc(j)
    rows = torch.arange(T)
    target = torch.arange(1, T + 1)
    target[-1] = T - 1  # the query has no successor and matches itself
    best = sims[rows, target]
    sims[rows, target] = -math.inf
    margin = float((best - sims.max(dim=1).values).min())
    if margin <= 0:
        raise ValueError(f"a {P}-dim positional encoding cannot single out the next of {T} tokens; raise pos_dim")
    return MARGIN_LOGITS / margin


@torch.no_grad()
def set_copy_weights(model: InContextTransformer, layer: int, T: int, P: int) -> None:
    """Make `layer` (softmax, one head) copy the y-slot of token i + 1 into token i."""
    dx, dy, D = model.dx, model.dy, model.dx + model.dy + P
    a = model.blocks[layer].attn
    pos, y = slice(dx + dy, D), slice(dx, dx + dy)
    for w in (a.W_Q, a.W_K, a.W_V, a.P):
        w.zero_()
    a.W_Q[0, pos, pos] = copy_sharpness(T, P) * math.sqrt(D) * shift_matrix(P).to(a.W_Q.dtype)  # undo 1/sqrt(D)
    a.W_K[0, pos, pos] = torch.eye(P, dtype=a.W_K.dtype)
    a.W_V[0, y, y] = torch.eye(dy, dtype=a.W_V.dtype)
    a.P[0] = torch.eye(D, dtype=a.P.dtype)


@torch.no_grad()
def set_gd_layer(model: InContextTransformer, layer: int, eta: float, n_keys: int, n_pairs: int) -> None:
    """A linear GD layer on tokens whose x-slot and y-slot hold (x_j, y_j); keys averaged over n_keys."""
    dx, dy = model.dx, model.dy
    D = model.blocks[layer].attn.dim
    kq, pv = gd_products(dx, dy, eta * n_keys / n_pairs)  # (dx+dy)^2 blocks; position dims stay 0
    a = model.blocks[layer].attn
    for w in (a.W_Q, a.W_K, a.W_V, a.P):
        w.zero_()
    a.W_Q[0, : dx + dy, : dx + dy] = kq
    a.W_K[0, : dx + dy, : dx + dy] = kq
    a.W_V[0, : dx + dy, : dx + dy] = pv
    a.P[0] = torch.eye(D, dtype=a.P.dtype)


class CopyGD(LSAGD):
    """Proposition 3 then Proposition 1: a copying softmax layer, then one GD layer (`gd`'s rate).

    One GD layer only: every token is a key (the query must find itself in the copy layer),
    and after a first GD layer the query's y-slot is no longer empty, so it would leak into a second.
    """

    name = "copy-gd"

    class Config(GradientDescent.Config):
        @model_validator(mode="after")
        def _one_step(self):
            if self.steps != 1:
                raise ValueError(f"copy-gd implements one GD step after copying; steps must be 1, got {self.steps}")
            return self

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        if episode.token_format != FORMAT:
            raise ValueError(f"copy-gd reads alternating tokens; the episode has {episode.token_format or 'plain pairs'}")
        etas, _ = self.gd.rates()
        T, D = episode.tokens.shape[1:]
        P = D - episode.dx - episode.dy
        model = InContextTransformer(episode.dx, episode.dy, 1 + len(etas), 1, ["softmax"] + ["linear"] * len(etas),
                                     False, False, False, self.config.clip, 1.0, FORMAT, P).double()
        set_copy_weights(model, 0, T, P)
        for k, eta in enumerate(etas):
            set_gd_layer(model, k + 1, eta, T, episode.n_context)
        model.to(device=episode.device, dtype=episode.tokens.dtype)
        return model.predict(episode)

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload | None:
        """`gd`'s tuning, then the copying and GD layers on the alternating tokens."""
        tune = self.gd.workload(shape, n_tasks, batch_size, dtype_bytes)
        if shape.token_format != FORMAT:
            return tune  # predict refuses such tasks at once
        T, D = shape.tokens, shape.token_dim
        elems, flops = stack_cost(T, T, D, 2, ["softmax", "linear"])
        params = 2 * block_parameters(D, 1, False, False)
        return tune | prediction_workload(elems, flops, params, n_tasks, batch_size, dtype_bytes,
                                          f"batch_size={batch_size} tasks x T={T} tokens x D={D}")


class CopyTransformer(TransformerLearner):
    """A trained two-layer Transformer on alternating tokens: softmax, then linear attention."""

    name = "copy-tf"
    token_format = FORMAT

    class Config(TransformerLearner.Config):
        layers: int = Field(2, ge=1)
        attention: Kind | list[Kind] = Field(default_factory=lambda: ["softmax", "linear"])
        # the copy must break the symmetry of near-uniform softmax attention: from the LSA
        # default (0.002 / K) training sits on the plateau for thousands of steps
        init_scale: float | None = Field(1.0, gt=0, description="fan-in init variance scale")
        copy_tasks: int = Field(16, ge=1, description="held-out tasks used for the copy-dependence curve")

    def monitors(self) -> dict:
        n = self.config.copy_tasks
        return {"copy": lambda m, ep: dict(zip(("copy_next", "copy_other"), copy_dependence(m, ep.slice(0, n))))}

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload | None:
        """Training as every Transformer, and the copy monitor: one copy of its tasks per
        output coordinate (T*D), each through the first layer with its tape, plus the Jacobian."""
        train = super().workload(shape, n_tasks, batch_size, dtype_bytes)
        if train is None:
            return None
        c, T, D = self.config, shape.tokens, shape.token_dim
        first = c.attention if isinstance(c.attention, str) else c.attention[0]
        elems, flops = layer_cost(T, T, D, c.heads, first == "softmax", c.mlp, c.layernorm)
        copies = c.copy_tasks * T * D
        evals = -(-c.train.steps // c.train.eval_every)
        written = evals * copies * (2 * elems + 3 * T * D)
        monitor = Workload(copies * (TAPE_FACTOR * elems + 3 * T * D) * 4,
                           compute_seconds(evals * 3 * copies * flops, elements=written),
                           f"copy_tasks={c.copy_tasks} tasks x (T={T} x D={D})^2")
        return train | monitor


def copy_dependence(model: InContextTransformer, episode: iclbench.Episode) -> tuple[float, float]:
    """Mean norm of d(layer-1 output at x token j) / d e_{j+1}, and / d e_k for the other k != j.

    The whole Jacobian in one backward pass: tasks are independent, so the batch is repeated
    once per output coordinate (T*D copies) and each copy back-propagates one one-hot cotangent.
    """
    z = episode.tokens.detach()
    B, T, D = z.shape
    zr = z.repeat(T * D, 1, 1).requires_grad_(True)  # (T*D*B, T, D), copy c = rows c*B..(c+1)*B-1
    out = model.blocks[0](zr, T, query_only=False)  # (T*D*B, T, D)
    cot = torch.eye(T * D, dtype=z.dtype, device=z.device).reshape(T * D, 1, T, D).expand(-1, B, -1, -1)
    (g,) = torch.autograd.grad((out * cot.reshape(-1, T, D)).sum(), zr)
    J = g.reshape(T, D, B, T, D)  # J[j, a, b, k, c] = d out_b[j, a] / d z_b[k, c]
    norms = J.pow(2).sum(dim=(1, 4)).sqrt().permute(1, 0, 2)  # (B, T_out, T_in)
    j = torch.arange(0, T - 1, 2, device=z.device)  # the context's x tokens
    rows = norms[:, j]  # (B, N, T_in)
    i = torch.arange(len(j), device=z.device)
    nxt, own = rows[:, i, j + 1], rows[:, i, j]  # (B, N) each
    other = (rows.sum(-1) - nxt - own) / (T - 2)
    return float(nxt.mean()), float(other.mean())


@iclbench.hookimpl
def register_learners(register) -> None:
    register(CopyGD)
    register(CopyTransformer)
