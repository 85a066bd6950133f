"""Reference baselines of Garg et al. (2022): zero, k-nearest neighbours, averaging."""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import running_means


class Zero(iclbench.Learner):
    """Predicts 0: the loss of knowing nothing (0.5 * E||y||^2)."""

    name = "zero"

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return torch.zeros_like(episode.query_y)


class KNearestNeighbours(iclbench.Learner):
    """Mean label of the k context inputs closest to the query (Euclidean)."""

    name = "knn"

    class Config(iclbench.LearnerConfig):
        k: int = Field(3, ge=1)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        k = min(self.config.k, episode.n_context)
        dist = (episode.context_x - episode.query_x[:, None]).pow(2).sum(-1)  # (B, N)
        idx = dist.topk(k, dim=1, largest=False).indices  # (B, k)
        picked = episode.context_y.gather(1, idx[..., None].expand(-1, -1, episode.dy))  # (B, k, dy)
        return picked.mean(dim=1)


class Averaging(iclbench.Learner):
    """w_hat = mean_i y_i x_i, prediction w_hat x_q: one untuned GD step with eta = 1."""

    name = "averaging"

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        w = torch.einsum("bno,bnd->bod", episode.context_y, episode.context_x) / episode.n_context  # (B, dy, d)
        return torch.einsum("bod,bd->bo", w, episode.query_x)

    def predict_prefixes(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, N, dy): the prediction from every context prefix, in one pass."""
        return running_means(episode)


@iclbench.hookimpl
def register_learners(register) -> None:
    for cls in (Zero, KNearestNeighbours, Averaging):
        register(cls)
