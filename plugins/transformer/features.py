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
from iclbench.training import TrainConfig
from iclbench_plugins.transformer.learners import TransformerLearner
from iclbench_plugins.transformer.model import MLP, InContextTransformer, tokens


class DeepFeatureModel(nn.Module):
    """Embedding + residual MLP per token, then LSA (`gd=False`) or one GD step (`gd=True`)."""

    def __init__(self, dx: int, dy: int, width: int, gd: bool, attention_init: float) -> None:
        super().__init__()
        self.dx, self.dy, self.width = dx, dy, width
        self.embed = nn.Linear(dx, width)
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

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
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

    def build_model(self, dx: int, dy: int, extra_dim: int = 0) -> DeepFeatureModel:
        return DeepFeatureModel(dx, dy, self.config.width, self.gd, self.config.init_scale or 0.002)


class MLPGD(MLPLSA):
    """The same embedding and MLP meta-trained through one GD step (learned rate) on their features."""

    name = "mlp-gd"
    gd = True


@iclbench.hookimpl
def register_learners(register) -> None:
    register(MLPLSA)
    register(MLPGD)
