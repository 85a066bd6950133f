"""`seq-tf`: causal Transformers trained to predict every next state of a sequence (von Oswald
et al. 2023b), with linear, softmax or mesa attention, on constructed or raw tokens.

Constructed tokens follow the reference code: e_t = (0, s_t, s_{t-1}) in R^(3D) (s_0 = 0), no
embedding, the prediction of s_{t+1} read from the first D channels of the residual stream, so
one linear layer with W_Q = s_t-block, W_K = s_{t-1}-block, W_V = s_t-block and P = eta into the
first block is one step of online GD (`online-gd`), and a mesa-layer with those projections is
online ridge (`online-ridge`). Raw tokens: e_t = W_in s_t (width `width`), read out by W_out.

Attention is causal over t' <= t with no normalisation for linear attention (a sum, as in the
reference), 1/sqrt(key_dim) scaling for softmax, and the mesa-layer's ridge solve per head
(lambda learned). `attention="hybrid"`: a softmax first layer, mesa-layers after it. Training
averages 1/2 ||prediction - s_{t+1}||^2 over tasks and all positions, on fresh sequences.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import iclbench
from iclbench.plugin_api import (
    INTERLEAVED, is_sequence, meta_train, placed, states_of, TrainConfig, training_checkpoint,
    TrainResult)
from iclbench_plugins.transformers.nn.attention import linear_attention
from iclbench_plugins.transformers.nn.mesa_layer import mesa_attention
from iclbench_plugins.transformers.nn.stackable import LayerNorm, Linear

Kind = Literal["linear", "softmax", "mesa"]


class SequenceTrainConfig(TrainConfig):
    """The reference's batch (256) and a CPU-sized step count."""

    steps: int = Field(2000, ge=0, description="optimiser steps, each on fresh sequences")
    batch_size: int = Field(256, ge=1, description="sequences per step (the reference: 256)")
    eval_tasks: int = Field(1024, ge=1, description="size of the fixed held-out set")


class CausalAttention(nn.Module):
    """One causal attention layer of `kind`, heads of size key_dim, its output projected back."""

    def __init__(self, width: int, heads: int, key_dim: int, kind: Kind, init_std: float) -> None:
        super().__init__()
        self.heads, self.key_dim, self.kind = heads, key_dim, kind
        self.W_Q, self.W_K, self.W_V = (nn.Linear(width, heads * key_dim, bias=False) for _ in range(3))
        self.P = nn.Linear(heads * key_dim, width, bias=False)
        for lin in (self.W_Q, self.W_K, self.W_V, self.P):
            nn.init.normal_(lin.weight, std=init_std)
        self.log_lambda = nn.Parameter(torch.zeros(heads)) if kind == "mesa" else None  # (H,) lambda = 1 at init
        self.method = "auto"  # the mesa-layer's solver (`mesa_attention`); the same function either way

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.key_dim).transpose(1, 2)  # (B, H, T, key_dim)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, T, width) -> the update (B, T, width), causal."""
        q, k, v = self.split(self.W_Q(e)), self.split(self.W_K(e)), self.split(self.W_V(e))
        if self.kind == "linear":
            out = linear_attention(q, k, v)  # (B, H, T, key_dim)
        elif self.kind == "softmax":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, key_dim)
        else:
            out = mesa_attention(q, k, v, self.log_lambda.exp(), self.method)  # (B, H, T, key_dim)
        B, T, _ = e.shape
        return self.P(out.transpose(1, 2).reshape(B, T, self.heads * self.key_dim))


class SequenceTransformer(nn.Module):
    """Tokens from states, residual attention layers (optionally LayerNorm before, MLP after),
    and the read-out of every next state."""

    def __init__(self, D: int, tokens: str, kinds: list[Kind], heads: int, key_dim: int, width: int,
                 mlp: bool, layernorm: bool, init_std: float) -> None:
        super().__init__()
        self.D, self.tokens = D, tokens
        W = 3 * D if tokens == "constructed" else width
        self.read_in = nn.Linear(D, W, bias=False) if tokens == "raw" else None
        self.read_out = nn.Linear(W, D, bias=False) if tokens == "raw" else None
        self.attn = nn.ModuleList(CausalAttention(W, heads, key_dim, kind, init_std) for kind in kinds)
        self.norms = nn.ModuleList(LayerNorm(W) if layernorm else nn.Identity() for _ in kinds)
        self.mlps = nn.ModuleList(nn.Sequential(Linear(W, 4 * W), nn.GELU(), Linear(4 * W, W))
                                  for _ in kinds) if mlp else None

    def embed(self, s: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states s_1..s_T -> (B, T, width) tokens."""
        if self.read_in is not None:
            return self.read_in(s)
        prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)  # (B, T, D) s_{t-1}, s_0 = 0
        return torch.cat([torch.zeros_like(s), s, prev], dim=-1)  # (B, T, 3D) (0, s_t, s_{t-1})

    def streams(self, s: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream (B, T, width) of states s (B, T, D): the tokens, then after each layer."""
        out = [self.embed(s)]
        for i, attn in enumerate(self.attn):
            e = out[-1] + attn(self.norms[i](out[-1]))
            out.append(e + self.mlps[i](e) if self.mlps is not None else e)
        return out

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states s_1..s_T -> (B, T, D) predictions of s_2..s_{T+1}."""
        e = self.streams(s)[-1]
        return self.read_out(e) if self.read_out is not None else e[..., :self.D]


def sequence_loss(model: SequenceTransformer, episode: iclbench.Episode) -> torch.Tensor:
    """1/2 ||prediction - s_{t+1}||^2 averaged over tasks and positions."""
    s = states_of(episode)  # (B, T+1, D)
    return 0.5 * (placed(model, s)(s[:, :-1]) - s[:, 1:]).pow(2).sum(-1).mean()


class SequenceTransformerLearner(iclbench.Learner):
    """A causal Transformer trained on next-state prediction at every position (module docstring)."""

    name = "seq-tf"
    trains = True  # fit meta-trains through iclbench.meta_train; config.train sets how

    class Config(iclbench.LearnerConfig):
        tokens: Literal["constructed", "raw"] = Field("constructed", description="(0, s_t, s_t-1) tokens, or s_t embedded")
        layers: int = Field(1, ge=1, description="attention layers")
        attention: Literal["linear", "softmax", "mesa", "hybrid"] = Field(
            "linear", description="hybrid: softmax first, mesa after")
        heads: int = Field(1, ge=1, description="heads per layer (the reference: 4)")
        key_dim: int | None = Field(None, ge=1, description="per-head key size; None: D")
        width: int = Field(40, ge=1, description="residual width with raw tokens")
        mlp: bool = Field(False, description="a residual GELU MLP (width 4 W) after each attention layer")
        layernorm: bool = Field(False, description="LayerNorm before each attention layer")
        init_std: float = Field(0.02, gt=0, description="std of the attention projections' normal init")
        train: SequenceTrainConfig = Field(default_factory=SequenceTrainConfig)

    model: SequenceTransformer | None = None
    training: TrainResult | None = None

    def kinds(self) -> list[Kind]:
        c = self.config
        if c.attention == "hybrid":
            return ["softmax"] + ["mesa"] * (c.layers - 1)
        return [c.attention] * c.layers

    def build_model(self, D: int) -> SequenceTransformer:
        c = self.config
        return SequenceTransformer(D, c.tokens, self.kinds(), c.heads, c.key_dim or D, c.width, c.mlp, c.layernorm,
                                   c.init_std)

    def fit(self, task, *, generator, device) -> None:
        probe = task.sample(1, generator=torch.Generator(device=device).manual_seed(0), device=device)
        if not is_sequence(probe):
            raise ValueError(f"seq-tf trains on sequence tasks; {task.name!r} gives token_format {probe.token_format!r}")
        torch.manual_seed(generator.initial_seed())  # the init draws from torch's global stream
        self.model = self.build_model(probe.dx)
        cfg = self.config.train
        self.training = meta_train(self.model, sequence_loss, task, cfg, generator=generator, device=device,
                                   lr=cfg.lr or 1e-3, checkpoint=training_checkpoint(self, task, generator),
                                   desc=self.label)

    def fit_info(self) -> dict:
        return {} if self.training is None else self.training.info()

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, T, D): the prediction of s_{t+1} at every position, one causal pass."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: not trained; call fit() first")
        s = states_of(episode)  # (B, T+1, D)
        return self.model.to(device=s.device, dtype=s.dtype)(s[:, :-1])

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        """The next state after the last token: s_{T+1} on a sequence; on interleaved few-shot
        tokens x_1, y_1, ..., x_{n+1}, the model's guess of y_{n+1}."""
        if episode.token_format == INTERLEAVED:
            if self.model is None:
                raise RuntimeError(f"{self.name}: not trained; call fit() first")
            tokens = episode.tokens  # (B, L, D)
            return self.model.to(device=tokens.device, dtype=tokens.dtype)(tokens)[:, -1]
        return self.predict_positions(episode)[:, -1]


def trained_seq_tf(ctx, spec: str, analysis: str) -> SequenceTransformerLearner:
    """`spec` fitted by the analysis context `ctx` (cache and seed as `evaluate`'s), refused
    unless it is a seq-tf: the analyses of sequence Transformers read its model."""
    trained = ctx.learner(spec)
    if not isinstance(trained, SequenceTransformerLearner):
        raise ValueError(f"analysis {analysis!r} needs a seq-tf learner, got {trained.label!r}")
    return trained


def set_online_weights(model: SequenceTransformer, eta: float | None = None, lam: float | None = None) -> None:
    """Make a 1-layer, 1-head, key_dim-D model on constructed tokens online GD with rate eta
    (linear attention) or online ridge with lambda (mesa attention)."""
    D, layer = model.D, model.attn[0]
    like = layer.W_Q.weight
    eye, zero = torch.eye(D, dtype=like.dtype), torch.zeros(D, D, dtype=like.dtype)
    with torch.no_grad():
        layer.W_Q.weight.copy_(torch.cat([zero, eye, zero], 1))  # (D, 3D): q = s_t
        layer.W_K.weight.copy_(torch.cat([zero, zero, eye], 1))  # k = s_{t-1}
        layer.W_V.weight.copy_(torch.cat([zero, eye, zero], 1))  # v = s_t
        layer.P.weight.copy_(torch.cat([eye, zero, zero], 0) * (1.0 if eta is None else eta))  # (3D, D) into block 1
        if lam is not None:
            layer.log_lambda.fill_(math.log(lam))


@iclbench.hookimpl
def register_learners(register) -> None:
    register(SequenceTransformerLearner)
