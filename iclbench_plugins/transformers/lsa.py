"""Transformer learners: trained `lsa`, `softmax-tf`, `layernorm-tf`, and the GD constructions.

`lsa-gd` sets LSA weights by Proposition 1 so that K layers are K steps of `gd` (same tuned
learning rates); `lsa-gd++` does the same for `gd++`. Trained learners use the core
meta-training loop and its checkpoint cache.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import (
    alignment, compute_seconds, derive_seed, meta_train, placed, sensitivities,
    TAPE_FACTOR, task_losses, TaskShape, TrainConfig, training_checkpoint, TrainResult, Workload)
from iclbench_plugins.learners.gradient_descent import GDPlusPlus, GradientDescent
from iclbench_plugins.transformers.nn.constructions import set_gd_weights
from iclbench_plugins.transformers.nn.model import InContextTransformer


def predict_with(model: torch.nn.Module, episode: iclbench.Episode, steps: int | None = None) -> torch.Tensor:
    """(B, dy) prediction of `model` on `episode`, run in the episode's device and dtype."""
    placed(model, episode.context_x)
    return model.predict(episode) if steps is None else model.predict(episode, steps)


Kind = Literal["linear", "softmax"]
ALIGNMENT_TASKS = 256  # held-out tasks the alignment curve is measured on
REFERENCE_TASKS = 2048  # training tasks the alignment curve's GD-K and GD++-K are tuned on


def gd1_alignment(model: torch.nn.Module, episode: iclbench.Episode) -> float:
    """Mean cosine between the model's query sensitivities and one GD step's, (eta/N) sum_i y_i x_i^T.

    The cosine does not depend on GD's learning rate, so it can be tracked during training.
    """
    ep = episode.slice(0, ALIGNMENT_TASKS)
    sens = sensitivities(lambda e: predict_with(model, e), ep).flatten(1)  # (B, dy*dx)
    gd = torch.einsum("bno,bnd->bod", ep.context_y, ep.context_x).flatten(1)  # (B, dy*dx)
    return float(torch.nn.functional.cosine_similarity(sens, gd, dim=-1, eps=1e-12).mean())


def depth_alignment(references: dict[str, iclbench.Learner], fit: Callable[[iclbench.Learner], None]
                    ) -> Callable[[torch.nn.Module, iclbench.Episode], dict]:
    """A monitor: the model's prediction difference and sensitivity cosine against each
    reference (GD-K and GD++-K for a K-layer model), on the first ALIGNMENT_TASKS held-out
    tasks. References are fitted on first use, so a cached training never tunes them."""

    def monitor(model: torch.nn.Module, episode: iclbench.Episode) -> dict[str, float]:
        for ref in references.values():
            if not ref.tuned:
                fit(ref)
        ep = episode.slice(0, ALIGNMENT_TASKS)
        mine = lambda e: predict_with(model, e)  # noqa: E731
        pred, sens = mine(ep).detach(), sensitivities(mine, ep)  # (B, dy), (B, dy, dx)
        out = {}
        for tag, ref in references.items():
            values = alignment(pred, ref.predict(ep), sens, sensitivities(ref.predict, ep))  # each (B,)
            out |= {f"pred_diff_{tag}": float(values["pred_diff"].mean()),
                    f"sens_cos_{tag}": float(values["sens_cos"].mean())}
        return out

    return monitor


def layer_cost(targets: int, keys: int, D: int, heads: int, softmax: bool, mlp: bool,
               layernorm: bool) -> tuple[int, int]:
    """(numbers kept for the backward pass, flops) per task of one Block on `targets` tokens."""
    per_token = 2 * heads * D + heads * keys * (2 if softmax else 1) + 2 * D  # queries, scores, sums, update
    per_token += (10 * D if mlp else 0) + (2 * D if layernorm else 0)
    flops = 4 * heads * D * (D + keys) + (16 * D * D if mlp else 0)
    return targets * per_token, targets * flops


def stack_cost(T: int, keys: int, D: int, layers: int, kinds: Sequence[str], heads: int = 1,
               mlp: bool = False, layernorm: bool = False) -> tuple[int, int]:
    """(numbers kept for the backward pass, flops) per task of an InContextTransformer's forward
    pass: layer k is of kind kinds[k % len(kinds)], the last updates the query token alone.
    Counted per kind, so a model of a billion layers costs nothing to estimate."""
    elems, flops, n = T * D, 0, len(kinds)
    for i, kind in enumerate(kinds):
        full = -(-(layers - 1 - i) // n) if i < layers - 1 else 0  # layers k < K-1 with k % n == i
        last = int((layers - 1) % n == i)
        for targets, count in ((T, full), (1, last)):
            e, f = layer_cost(targets, keys, D, heads, kind == "softmax", mlp, layernorm)
            elems, flops = elems + count * e, flops + count * f
    return elems, flops


def block_parameters(D: int, heads: int, mlp: bool, layernorm: bool) -> int:
    """Parameters of one Block."""
    return 4 * heads * D * D + (8 * D * D + 5 * D if mlp else 0) + (2 * D if layernorm else 0)


def prediction_workload(elems: float, flops: float, params: float, n_tasks: int, batch_size: int,
                        dtype_bytes: int, drivers: str) -> Workload:
    """Predicting `n_tasks`, `batch_size` at a time, keeping an autograd tape of `elems` numbers
    per task (sensitivities are taken over whole chunks)."""
    return Workload(TAPE_FACTOR * batch_size * elems * dtype_bytes + 2 * params * 8,
                    compute_seconds(3 * n_tasks * flops, elements=2 * n_tasks * elems), drivers)


def training_workload(cfg: TrainConfig, shape: TaskShape, elems: float, flops: float, params: float,
                      layers: int, size: str) -> Workload:
    """Meta-training in float32: each step's batch (sampled with a few temporaries) and its tape,
    the held-out set, the weights and Adam's state; time for forward and backward on every step,
    and the held-out evaluations."""
    b, f32, sample = cfg.batch_size, 4, 4 * shape.episode_elements()
    peak = b * (TAPE_FACTOR * elems + sample) * f32 + cfg.eval_tasks * (elems + sample) * f32 + 4 * params * f32
    evals = math.ceil(cfg.steps / cfg.eval_every) * cfg.eval_tasks
    seconds = compute_seconds(cfg.steps * 3 * b * flops + evals * flops, cfg.steps * (30 * layers + 30),
                              cfg.steps * b * (2 * elems + sample) + evals * elems)
    return Workload(peak, seconds, f"train.steps={cfg.steps} x train.batch_size={b} tasks x {size}")



def default_lr(layers: int) -> float:
    """Adam's learning rate when the config sets none: the reference code's 1e-3, halved for
    models deeper than three layers (which otherwise diverge at this rate)."""
    return 1e-3 if layers <= 3 else 5e-4

class TransformerLearner(iclbench.Learner):
    """A meta-trained in-context Transformer (the `lsa` preset: linear attention, no LayerNorm)."""

    name = "lsa"
    trains = True  # fit meta-trains through iclbench.meta_train; config.train sets how

    class Config(iclbench.LearnerConfig):
        layers: int = Field(1, ge=1, description="K, the number of attention layers")
        heads: int = Field(1, ge=1, description="attention heads per layer")
        attention: Kind | list[Kind] = Field("linear", description="one kind for all layers, or one per layer")
        recurrent: bool = Field(False, description="one layer applied K times (tied weights)")
        mlp: bool = Field(False, description="a residual GELU MLP (width 4 D) after each attention")
        layernorm: bool = Field(False, description="LayerNorm before each attention")
        clip: float | None = Field(None, gt=0, description="clip token values to [-clip, clip] after each layer")
        init_scale: float | None = Field(None, gt=0, description="fan-in init variance scale; None: 0.002 / K")
        train: TrainConfig = Field(default_factory=TrainConfig)

        @model_validator(mode="after")
        def _kinds(self):
            if isinstance(self.attention, list):
                n = 1 if self.recurrent else self.layers
                if len(self.attention) != n:
                    raise ValueError(f"attention lists {len(self.attention)} kinds for {n} distinct layers")
            return self

    token_format = "pairs"
    model: InContextTransformer | None = None
    training: TrainResult | None = None

    def build_model(self, dx: int, dy: int, extra_dim: int = 0) -> InContextTransformer:
        c = self.config
        return InContextTransformer(dx, dy, c.layers, c.heads, c.attention, c.recurrent, c.layernorm,
                                    c.mlp, c.clip, c.init_scale or 0.002 / c.layers, self.token_format, extra_dim)

    def loss(self, model: InContextTransformer, episode: iclbench.Episode) -> torch.Tensor:
        return task_losses(predict_with(model, episode), episode.query_y).mean()

    def model_cost(self, shape: TaskShape) -> tuple[float, float, float, str] | None:
        """(tape numbers, flops) per task, parameters, and a description of the model's size;
        None if the model cannot read `shape`'s tasks."""
        c = self.config
        if self.token_format == "pairs":
            T, D, keys = shape.pair_tokens, shape.dx + shape.dy, shape.n_context
        elif shape.token_format == self.token_format:
            T, D, keys = shape.tokens, shape.token_dim, shape.tokens
        else:
            return None
        kinds = [c.attention] if isinstance(c.attention, str) else c.attention
        elems, flops = stack_cost(T, keys, D, c.layers, kinds, c.heads, c.mlp, c.layernorm)
        params = (1 if c.recurrent else c.layers) * block_parameters(D, c.heads, c.mlp, c.layernorm)
        return elems, flops, params, f"layers={c.layers} x heads={c.heads} x T={T} tokens x D={D}"

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload | None:
        cost = self.model_cost(shape)
        if cost is None:
            return None
        elems, flops, params, size = cost
        layers = getattr(self.config, "layers", 1)
        train = training_workload(self.config.train, shape, elems, flops, params, layers, size)
        return train | prediction_workload(elems, flops, params, n_tasks, batch_size, dtype_bytes,
                                           f"batch_size={batch_size} tasks x {size}")

    def fit(self, task, *, generator, device) -> None:
        probe = task.sample(1, generator=torch.Generator(device=device).manual_seed(0), device=device)
        torch.manual_seed(generator.initial_seed())  # the init draws from torch's global stream
        extra = 0 if self.token_format == "pairs" else probe.tokens.shape[-1] - probe.dx - probe.dy
        self.model = self.build_model(probe.dx, probe.dy, extra)
        cfg = self.config.train
        self.training = meta_train(
            self.model, self.loss, task, cfg, generator=generator, device=device,
            lr=cfg.lr or default_lr(getattr(self.config, "layers", 1)),
            checkpoint=training_checkpoint(self, task, generator), desc=self.label,
            monitors=self.monitors() | self.depth_monitors(task, generator, device),
        )

    def monitors(self) -> dict:
        """Extra curves recorded at every held-out evaluation: alignment with GD over training."""
        return {"sens_cos_gd1": gd1_alignment}

    def depth_monitors(self, task, generator: torch.Generator, device) -> dict:
        """For a K-layer model on pair tokens (K > 1), alignment over training with GD-K and
        GD++-K (shared rates, the model's token clipping), and for untied layers with per-step
        GD++-K, each tuned on its own training tasks."""
        K = getattr(self.config, "layers", 1)  # feature models (mlp-gd) have no attention layers
        if K == 1 or self.token_format != "pairs" or type(self).monitors is not TransformerLearner.monitors:
            return {}
        refs = {"gd_k": GradientDescent(steps=K, clip=self.config.clip, tune_tasks=REFERENCE_TASKS),
                "gdpp_k": GDPlusPlus(steps=K, clip=self.config.clip, tune_tasks=REFERENCE_TASKS)}
        if not self.config.recurrent:  # untied layers are compared with per-step rates too (Fig 3b)
            refs["gdpp_step_k"] = GDPlusPlus(steps=K, per_step=True, clip=self.config.clip, tune_tasks=REFERENCE_TASKS)
        gen = torch.Generator(device=device).manual_seed(derive_seed(generator.initial_seed(), "depth-references"))
        return {"depth": depth_alignment(refs, lambda ref: ref.fit(task, generator=gen, device=device))}

    def fit_info(self) -> dict:
        return {} if self.training is None else self.training.info()

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: not trained; call fit() first")
        return predict_with(self.model, episode)


class SoftmaxTransformer(TransformerLearner):
    """A trained Transformer with softmax attention on (x, y) tokens (Sec. 4: it does worse than GD; two heads help)."""

    name = "softmax-tf"

    class Config(TransformerLearner.Config):
        attention: Kind | list[Kind] = "softmax"


class LayerNormTransformer(TransformerLearner):
    """A trained LSA Transformer with LayerNorm on its tokens (Sec. 4: it does worse than GD)."""

    name = "layernorm-tf"

    class Config(TransformerLearner.Config):
        layernorm: bool = True


class LSAGD(iclbench.Learner):
    """LSA with the Proposition 1 weights: K layers = K steps of `gd` with its tuned rates.

    With `clip`, token values are clipped after each layer, as in `gd`'s clipped token view and
    in a trained model with the same `clip`."""

    name = "lsa-gd"
    Config = GradientDescent.Config
    reference = GradientDescent

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.gd = self.reference(self.config)

    def fit(self, task, *, generator, device) -> None:
        self.gd.fit(task, generator=generator, device=device)

    def hyperparameters(self) -> dict:
        return self.gd.hyperparameters()

    def constructed(self, dx: int, dy: int) -> InContextTransformer:
        etas, gammas = self.gd.rates()
        model = InContextTransformer(dx, dy, len(etas), 1, "linear", False, False, False, self.config.clip, 1.0).double()
        set_gd_weights(model, etas, gammas)
        return model

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return predict_with(self.constructed(episode.dx, episode.dy), episode)

    def workload(self, shape, n_tasks, batch_size, dtype_bytes) -> Workload | None:
        """`gd`'s tuning, then the constructed K-layer model's predictions."""
        K, D = self.config.steps, shape.dx + shape.dy
        elems, flops = stack_cost(shape.pair_tokens, shape.n_context, D, K, ["linear"])
        predict = prediction_workload(elems, flops, K * block_parameters(D, 1, False, False), n_tasks, batch_size,
                                      dtype_bytes, f"steps={K} layers x batch_size={batch_size} tasks x D={D}")
        return predict | self.gd.workload(shape, n_tasks, batch_size, dtype_bytes)


class LSAGDPlusPlus(LSAGD):
    """LSA weights that carry out `gd++`: GD on y plus x <- (I - gamma X^T X / N) x per layer."""

    name = "lsa-gd++"
    Config = GDPlusPlus.Config
    reference = GDPlusPlus


@iclbench.hookimpl
def register_learners(register) -> None:
    for cls in (TransformerLearner, SoftmaxTransformer, LayerNormTransformer, LSAGD, LSAGDPlusPlus):
        register(cls)
