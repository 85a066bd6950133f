"""`causal-tf`: a GPT-2-style causal Transformer trained on every prefix (Garg et al. 2022).

After the reference code (github dtsip/in-context-learning, src/models.py TransformerModel,
src/curriculum.py, src/conf): the points are read as interleaved tokens x_1, y_1, ..., x_N,
y_N, x_query; a linear read-in maps each token to the model width, learned absolute position
embeddings are added, pre-LayerNorm blocks (causal multi-head softmax attention, GELU MLP of
width 4 W) and a final LayerNorm follow, and a linear read-out at each x token predicts that
point's y from the pairs before it. Training averages the squared error over all N + 1 x
positions (every prefix at once), on a curriculum that grows the input dimension and the
number of points.

Token layout: an x token is (x, 0) and a y token is (0, y) in R^(dx+dy); Garg instead writes
y into the first coordinate of a d-vector (x and y tokens then differ only by position).

Presets:

- default (small, for a CPU): layers=3, width=64, heads=2; Adam lr 1e-3, batch 64, 5000
  steps, curriculum intervals of 100 steps. About 0.15 M parameters on d = 20, N = 40.
- Garg's standard model: `causal-tf[layers=12,width=256,heads=8,train.lr=0.0001,
  train.steps=500000,dims_interval=2000,points_interval=2000]`: 9.5 M parameters on
  d = 20, N = 40 (81 tokens), ~1.5 Gflop per task forward. `workload`, with the harness's
  conservative 1e10 flop/s, estimates ~36 s per step at batch 64 (forward + backward), so
  500k steps exceed the week limit and need --allow-large; it is a GPU run. The small preset
  has ~0.16 M parameters; on one CPU core it measured 0.35 s per step at full size (batch 64,
  81 tokens), and `benchmarks/causal_tf.py` times both sizes.

Differences from Garg, on purpose: token layout (above); dy-dimensional read-out (dy = 1 on
Garg's tasks); loss is the plain mean squared error like Garg's, but the held-out curve is
measured on the full-size task, not the curriculum's; gradient-norm clipping at 10 (Garg: none);
the curriculum shrinks the task by sampling it with smaller `d` and `N` (then zero-padding x
to the full d), which for linear and ReLU-network tasks is the same law as Garg's zeroed
coordinates, while a decision tree then splits only on live coordinates (Garg's may split on
zeroed ones). The curriculum needs a task whose config has `d` and `N` fields.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

import iclbench
from iclbench.plugin_api import (
    Checkpoint, Curriculum, meta_train, placed, TaskShape, TrainConfig, training_checkpoint,
    TrainResult, Workload)
from iclbench_plugins.transformers.nn.stackable import LayerNorm, Linear
from iclbench_plugins.transformers.lsa import prediction_workload, training_workload


PREFIX_CHUNK = 1024  # tasks per prefix pass: 3N tokens each, so memory grows like N * PREFIX_CHUNK


class CausalTrainConfig(TrainConfig):
    """Meta-training for `causal-tf`: Garg's batch (64) and Adam betas (0.9, 0.999); lr 1e-3
    (Garg: 1e-4 for the 12-layer model), which trains the small preset in minutes on a CPU."""

    steps: int = Field(5000, ge=0, description="optimiser steps, each on fresh tasks")
    batch_size: int = Field(64, ge=1, description="tasks per step (Garg: 64)")
    lr: float | None = Field(1e-3, gt=0, description="Adam learning rate (Garg: 1e-4 for the 12-layer model)")
    beta2: float = Field(0.999, ge=0, lt=1)
    eval_tasks: int = Field(1024, ge=1, description="size of the fixed held-out set")


def curriculum_value(step: int, start: int, inc: int, interval: int, end: int) -> int:
    """Garg's schedule: start, raised by inc every interval steps, capped at end (the value
    used by the step after `step` completed steps)."""
    return min(start + (step // interval) * inc, end)


class Block(nn.Module):
    """Pre-LayerNorm GPT-2 block: causal multi-head softmax attention, then a GELU MLP (4 W)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = LayerNorm(width), LayerNorm(width)
        self.qkv, self.proj = Linear(width, 3 * width), Linear(width, width)
        self.fc, self.out = Linear(width, 4 * width), Linear(4 * width, width)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, W) -> (B, T, W). mask: (T, T) boolean, True where attention is allowed;
        None: causal."""
        B, T, W = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)  # (B, H, T, W/H)
        h = h + self.proj(a.transpose(1, 2).reshape(B, T, W))
        return h + self.out(F.gelu(self.fc(self.ln2(h)), approximate="tanh"))


class CausalTransformer(nn.Module):
    """Read-in, position embeddings for up to 2 * max_pairs + 1 tokens, blocks, LayerNorm, read-out.

    `step` (a buffer, so it is checkpointed with the weights) counts the curriculum's steps.
    """

    def __init__(self, dx: int, dy: int, max_pairs: int, layers: int, width: int, heads: int) -> None:
        super().__init__()
        self.dx, self.dy, self.max_pairs = dx, dy, max_pairs
        self.read_in = Linear(dx + dy, width)  # PyTorch's default init, as Garg's read-in
        self.pos = nn.Embedding(2 * max_pairs + 1, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = LayerNorm(width)
        self.read_out = Linear(width, dy)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        with torch.no_grad():  # GPT-2's init inside the backbone
            nn.init.normal_(self.pos.weight, std=0.02)
            for b in self.blocks:
                for lin in (b.qkv, b.proj, b.fc, b.out):
                    nn.init.normal_(lin.weight, std=0.02)
                    nn.init.zeros_(lin.bias)
                for lin in (b.proj, b.out):  # residual projections scaled by depth
                    lin.weight.mul_(1 / math.sqrt(2 * layers))

    def check(self, n_pairs: int) -> None:
        if n_pairs > self.max_pairs:
            raise ValueError(f"causal-tf was trained with position embeddings for {self.max_pairs} context "
                             f"pairs; the episode has {n_pairs}")

    def embed(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, 2N+1, dx+dy) interleaved tokens x_1, y_1, ..., x_N, y_N, x_query."""
        cx, cy = episode.context_x, episode.context_y
        B, N, dx = cx.shape
        z = cx.new_zeros(B, 2 * N + 1, dx + cy.shape[-1])
        z[:, 0:2 * N:2, :dx] = cx
        z[:, 1:2 * N:2, dx:] = cy
        z[:, 2 * N, :dx] = episode.query_x
        return z

    def run(self, z: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, dy) outputs for tokens z (B, T, dx+dy) at `positions` (T,)."""
        h = self.read_in(z) + self.pos(positions)
        for block in self.blocks:
            h = block(h, mask)
        return self.read_out(self.ln_f(h))

    def forward(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, N+1, dy): at [:, j] the prediction of y_{j+1} at x_{j+1} from pairs 1..j (the
        query last), one causal pass."""
        self.check(episode.n_context)
        z = self.embed(episode)
        return self.run(z, torch.arange(z.shape[1], device=z.device))[:, 0::2]

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self(episode)[:, -1]

    def prefixes(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, N, dy): at [:, k-1] the query prediction from pairs 1..k, all k in one pass.

        The 2N context tokens are followed by N copies of the query, copy k at position 2k
        (where it sits after k pairs), attending to the first 2k context tokens and itself:
        exactly the causal pass on episode.prefix(k), for every k at once."""
        self.check(episode.n_context)
        B, N = episode.batch_size, episode.n_context
        z = self.embed(episode)  # (B, 2N+1, D)
        queries = z[:, 2 * N:].expand(B, N, z.shape[-1])  # (B, N, D) the query token, once per k
        tokens = torch.cat([z[:, :2 * N], queries], dim=1)  # (B, 3N, D)
        dev = z.device
        k = torch.arange(1, N + 1, device=dev)  # (N,)
        positions = torch.cat([torch.arange(2 * N, device=dev), 2 * k])  # (3N,)
        T = 3 * N
        mask = torch.zeros(T, T, dtype=torch.bool, device=dev)
        mask[:2 * N, :2 * N] = torch.ones(2 * N, 2 * N, dtype=torch.bool, device=dev).tril()
        mask[2 * N:, :2 * N] = torch.arange(2 * N, device=dev)[None, :] < 2 * k[:, None]  # pairs 1..k
        mask[2 * N:, 2 * N:] = torch.eye(N, dtype=torch.bool, device=dev)  # and itself
        return self.run(tokens, positions, mask)[:, 2 * N:]


def causal_loss(model: CausalTransformer, episode: iclbench.Episode) -> torch.Tensor:
    """Garg's loss: squared error averaged over tasks and all N + 1 x positions (every prefix)."""
    placed(model, episode.context_x)  # on the episode's device and dtype; a stacked model is not moved
    targets = torch.cat([episode.context_y, episode.query_y[:, None]], dim=1)  # (B, N+1, dy)
    return (model(episode) - targets).pow(2).mean()


def query_loss(model: CausalTransformer, episode: iclbench.Episode) -> float:
    """The held-out loss in the evaluation's convention, for the training curves: 0.5 squared
    error of the query's prediction from all N pairs, mean over tasks (the training objective
    averages the squared error, without the 0.5, over every prefix)."""
    with torch.no_grad():
        pred = model(episode)[:, -1]  # (B, dy): the query, after all N pairs
    return float(0.5 * (pred - episode.query_y).pow(2).sum(-1).mean())


class CausalTransformerLearner(iclbench.Learner):
    """A GPT-2-style causal Transformer on interleaved (x, y) tokens, trained on every prefix
    with Garg's curriculum (module docstring: presets, costs, differences from Garg)."""

    name = "causal-tf"
    trains = True  # fit meta-trains through iclbench.meta_train; config.train sets how

    class Config(iclbench.LearnerConfig):
        layers: int = Field(3, ge=1, description="Transformer blocks (Garg's standard: 12)")
        width: int = Field(64, ge=1, description="embedding width W, a multiple of heads (Garg's standard: 256)")
        heads: int = Field(2, ge=1, description="attention heads per block (Garg's standard: 8)")
        curriculum: bool = Field(True, description="grow d and the number of points during training (Garg's)")
        dims_start: int = Field(5, ge=1, description="curriculum: input dimensions live at step 0 (Garg: 5)")
        dims_inc: int = Field(1, ge=1, description="curriculum: dimensions added every dims_interval steps (Garg: 1)")
        dims_interval: int = Field(100, ge=1, description="curriculum: steps between dimension increments (Garg: 2000)")
        points_start: int = Field(11, ge=2, description="curriculum: points (context + query) at step 0 (Garg: 11)")
        points_inc: int = Field(2, ge=1, description="curriculum: points added every points_interval steps (Garg: 2)")
        points_interval: int = Field(100, ge=1, description="curriculum: steps between point increments (Garg: 2000)")
        train: CausalTrainConfig = Field(default_factory=CausalTrainConfig)

        @model_validator(mode="after")
        def _check(self):
            if self.width % self.heads:
                raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
            if self.curriculum and self.train.pool is not None:
                raise ValueError(f"curriculum draws fresh tasks at each stage; train.pool ({self.train.pool}) "
                                 "needs curriculum=false")
            return self

    model: CausalTransformer | None = None
    training: TrainResult | None = None

    def curriculum_at(self, step: int, d: int, N: int) -> tuple[int, int]:
        """(input dimension, context pairs) of the task at `step` for a full task of (d, N)."""
        c = self.config
        if not c.curriculum:
            return d, N
        dims = curriculum_value(step, min(c.dims_start, d), c.dims_inc, c.dims_interval, d)
        points = curriculum_value(step, min(c.points_start, N + 1), c.points_inc, c.points_interval, N + 1)
        return dims, points - 1

    def build_model(self, dx: int, dy: int, n_context: int) -> CausalTransformer:
        c = self.config
        return CausalTransformer(dx, dy, n_context, c.layers, c.width, c.heads)

    def loss(self, model: CausalTransformer, episode: iclbench.Episode) -> torch.Tensor:
        return causal_loss(model, episode)

    def training_task(self, task: iclbench.Task, model: CausalTransformer, generator: torch.Generator) -> iclbench.Task:
        """`task`, or with `curriculum` Garg's curriculum over it (d and N grown with the step,
        x zero-padded to the full d), its steps counted in the model's `step` buffer."""
        if not self.config.curriculum:
            return task
        fields = type(task.config).model_fields
        if "d" not in fields or "N" not in fields:
            raise ValueError(f"causal-tf's curriculum needs a task with d and N config fields; "
                             f"{task.name!r} has none: set curriculum=false")
        d, N = task.config.d, task.config.N
        schedule = lambda step: dict(zip(("d", "N"), self.curriculum_at(step, d, N)))  # noqa: E731
        return Curriculum(task, schedule, generator, pad_to=d, counter=model.step)

    def train(self, task: iclbench.Task, *, generator: torch.Generator, device, checkpoint: Checkpoint | None = None,
              monitors: dict | None = None) -> TrainResult:
        """Build the model (init from the generator's seed) and meta-train it on `task`."""
        probe = task.sample(1, generator=torch.Generator(device=device).manual_seed(0), device=device)
        torch.manual_seed(generator.initial_seed())
        self.model = self.build_model(probe.dx, probe.dy, probe.n_context)
        cfg = self.config.train
        stream = self.training_task(task, self.model, generator)
        self.training = meta_train(self.model, self.loss, stream, cfg, generator=generator, device=device,
                                   lr=cfg.lr or 1e-3, checkpoint=checkpoint, desc=self.label,
                                   monitors={"query_loss": query_loss, **(monitors or {})},
                                   on_step=stream.on_step if isinstance(stream, Curriculum) else None)
        return self.training

    def fit(self, task, *, generator, device) -> None:
        self.train(task, generator=generator, device=device, checkpoint=training_checkpoint(self, task, generator))

    def fit_info(self) -> dict:
        return {} if self.training is None else self.training.info()

    def _model_for(self, episode: iclbench.Episode) -> CausalTransformer:
        if self.model is None:
            raise RuntimeError(f"{self.name}: not trained; call fit() first")
        if episode.tokens is not None:
            raise ValueError("causal-tf reads plain (x, y) pairs, not a task-made token sequence")
        return self.model.to(device=episode.device, dtype=episode.context_x.dtype)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, dy) the query prediction from all N pairs (read at the last token)."""
        return self._model_for(episode).predict(episode)

    def predict_prefixes(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, N, dy): at [:, k-1] the query prediction from the first k pairs, one forward pass
        per PREFIX_CHUNK tasks."""
        model = self._model_for(episode)
        B = episode.batch_size
        return torch.cat([model.prefixes(episode.slice(i, i + PREFIX_CHUNK)) for i in range(0, B, PREFIX_CHUNK)])

    def model_cost(self, shape: TaskShape) -> tuple[float, float, float, str]:
        """(tape numbers, flops) per task of one training forward pass, parameters, size."""
        c = self.config
        W, L, H, T, D = c.width, c.layers, c.heads, 2 * shape.n_context + 1, shape.dx + shape.dy
        params = L * (12 * W * W + 13 * W) + (D + 1) * W + T * W + 2 * W + (W + 1) * shape.dy
        flops = T * (L * (24 * W * W + 4 * T * W) + 2 * D * W + 2 * W * shape.dy)  # matmuls, scores and sums
        elems = T * (L * (18 * W + H * T) + 2 * W)  # activations kept, attention weights included
        return elems, flops, params, f"layers={c.layers} x width={c.width} x T={T} tokens"

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload | None:
        elems, flops, params, size = self.model_cost(shape)
        train = training_workload(self.config.train, shape, elems, flops, params, self.config.layers, size)
        return train | prediction_workload(elems, flops, params, n_tasks, batch_size, dtype_bytes,
                                           f"batch_size={batch_size} tasks x {size}")


@iclbench.hookimpl
def register_learners(register) -> None:
    register(CausalTransformerLearner)
