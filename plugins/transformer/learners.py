"""Transformer learners: trained `lsa`, `softmax-tf`, `layernorm-tf`, and the GD constructions.

`lsa-gd` sets LSA weights by Proposition 1 so that K layers are K steps of `gd` (same tuned
learning rates); `lsa-gd++` does the same for `gd++`. Trained learners use the core
meta-training loop and its checkpoint cache.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.checkpoints import Checkpoint, cache_key, current_cache_dir
from iclbench.metrics import sensitivities, task_losses
from iclbench.training import TrainConfig, TrainResult, default_lr, meta_train
from iclbench_plugins.gradient_descent import GDPlusPlus, GradientDescent
from iclbench_plugins.transformer.constructions import set_gd_weights
from iclbench_plugins.transformer.model import InContextTransformer


def predict_with(model: torch.nn.Module, episode: iclbench.Episode, steps: int | None = None) -> torch.Tensor:
    """(B, dy) prediction of `model` on `episode`, run in the episode's device and dtype."""
    model.to(device=episode.device, dtype=episode.context_x.dtype)
    return model.predict(episode) if steps is None else model.predict(episode, steps)


Kind = Literal["linear", "softmax"]
ALIGNMENT_TASKS = 256  # held-out tasks the alignment curve is measured on


def gd1_alignment(model: torch.nn.Module, episode: iclbench.Episode) -> float:
    """Mean cosine between the model's query sensitivities and one GD step's, (eta/N) sum_i y_i x_i^T.

    The cosine does not depend on GD's learning rate, so it can be tracked during training.
    """
    ep = episode.slice(0, ALIGNMENT_TASKS)
    sens = sensitivities(lambda e: predict_with(model, e), ep).flatten(1)  # (B, dy*dx)
    gd = torch.einsum("bno,bnd->bod", ep.context_y, ep.context_x).flatten(1)  # (B, dy*dx)
    return float(torch.nn.functional.cosine_similarity(sens, gd, dim=-1, eps=1e-12).mean())


class TransformerLearner(iclbench.Learner):
    """A meta-trained in-context Transformer (the `lsa` preset: linear attention, no LayerNorm)."""

    name = "lsa"

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

    def fit(self, task, *, generator, device) -> None:
        probe = task.sample(1, generator=torch.Generator(device=device).manual_seed(0), device=device)
        torch.manual_seed(generator.initial_seed())  # the init draws from torch's global stream
        extra = 0 if self.token_format == "pairs" else probe.tokens.shape[-1] - probe.dx - probe.dy
        self.model = self.build_model(probe.dx, probe.dy, extra)
        folder = current_cache_dir()
        key = cache_key(learner=self.name, config=self.config.model_dump(), task=task.name,
                        task_config=task.config.model_dump(), seed=generator.initial_seed())
        cfg = self.config.train
        self.training = meta_train(
            self.model, self.loss, task, cfg, generator=generator, device=device,
            lr=cfg.lr or default_lr(getattr(self.config, "layers", 1)),
            checkpoint=Checkpoint(folder, key) if folder else None, desc=self.label, monitors=self.monitors(),
        )

    def monitors(self) -> dict:
        """Extra curves recorded at every held-out evaluation: alignment with GD over training."""
        return {"sens_cos_gd1": gd1_alignment}

    def fit_info(self) -> dict:
        t = self.training
        if t is None:
            return {}
        return {"curve": t.curve, "train_seconds": t.seconds, "from_cache": t.from_cache, "resumed_at": t.resumed_at}

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError(f"{self.name}: not trained; call fit() first")
        return predict_with(self.model, episode)


class SoftmaxTransformer(TransformerLearner):
    name = "softmax-tf"

    class Config(TransformerLearner.Config):
        attention: Kind | list[Kind] = "softmax"


class LayerNormTransformer(TransformerLearner):
    name = "layernorm-tf"

    class Config(TransformerLearner.Config):
        layernorm: bool = True


class LSAGD(iclbench.Learner):
    """LSA with the Proposition 1 weights: K layers = K steps of `gd` with its tuned rates."""

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
        model = InContextTransformer(dx, dy, len(etas), 1, "linear", False, False, False, None, 1.0).double()
        set_gd_weights(model, etas, gammas)
        return model

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return predict_with(self.constructed(episode.dx, episode.dy), episode)


class LSAGDPlusPlus(LSAGD):
    """LSA weights that carry out `gd++`: GD on y plus x <- (I - gamma X^T X / N) x per layer."""

    name = "lsa-gd++"
    Config = GDPlusPlus.Config
    reference = GDPlusPlus


@iclbench.hookimpl
def register_learners(register) -> None:
    for cls in (TransformerLearner, SoftmaxTransformer, LayerNormTransformer, LSAGD, LSAGDPlusPlus):
        register(cls)
