"""Closed-form per-position references for sequence tasks (von Oswald et al. 2023b): at position
t, fit the transitions seen so far, (s_{t'-1}, s_t') for t' <= t, and apply the fit to s_t.

- `online-ridge`: Phi_t = (sum s_t' s_{t'-1}^T)(sum s_{t'-1} s_{t'-1}^T + lambda I)^{-1}, the
  mesa-layer's solution with keys s_{t-1}, values s_t, queries s_t; lambda tuned on training
  sequences for the loss averaged over positions (lambda -> 0: online least squares).
- `online-gd`: one gradient step from Phi = 0 on the summed loss 1/2 sum ||Phi s_{t'-1} - s_t'||^2,
  prediction eta sum_t' s_t' (s_{t'-1} . s_t), linear attention with the same keys and values;
  eta, in closed form, minimises the training loss averaged over positions.

Both give every position in one pass (`predict_positions`), batched over tasks.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.metrics import task_losses
from iclbench.positions import is_sequence, states_of
from iclbench.tuning import grid_search, training_sample
from iclbench_plugins.least_squares import Ridge
from iclbench_plugins.mesa_layer import mesa_attention


def transition_qkv(episode: iclbench.Episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries s_t, keys s_{t-1} (s_0 = 0), values s_t, each (B, 1, T, D) for t = 1..T, and the
    targets s_{t+1} (B, T, D)."""
    if not is_sequence(episode):
        raise ValueError(f"online references need a sequence episode, got token_format {episode.token_format!r}")
    s = states_of(episode).double()  # (B, T+1, D)
    q = s[:, :-1]  # (B, T, D) s_t
    k = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-2]], dim=1)  # (B, T, D) s_{t-1}
    return q[:, None], k[:, None], q[:, None], s[:, 1:]


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, H, T, dv): sum_{t' <= t} v_t' (k_t' . q_t)."""
    T = q.shape[2]
    scores = (q @ k.transpose(-1, -2)) * torch.ones(T, T, dtype=q.dtype, device=q.device).tril()  # (B, H, T, T)
    return scores @ v


class OnlineRidge(Ridge):
    """`ridge` at every position, lambda unscaled by the number of transitions (as the mesa-layer's)."""

    name = "online-ridge"

    class Config(iclbench.LearnerConfig):
        lam: float | None = Field(None, gt=0, description="fixed lambda; None: tuned on training sequences")
        grid: list[float] = Field(default_factory=lambda: [10.0**e for e in range(-6, 3)])
        tune_tasks: int = Field(2048, ge=1)

    def fit(self, task, *, generator, device) -> None:
        if self.config.lam is not None:
            return
        ep = training_sample(task, self.config.tune_tasks, generator, device)
        target = transition_qkv(ep)[3]  # (B, T, D)
        self.lam = grid_search(({"lam": lam} for lam in self.config.grid),
                               lambda c: float(task_losses(self.positions(ep, c["lam"]), target).mean()))["lam"]

    @staticmethod
    def positions(episode: iclbench.Episode, lam: float) -> torch.Tensor:
        q, k, v, _ = transition_qkv(episode)
        lam_h = torch.tensor([lam], dtype=q.dtype, device=q.device)  # (H=1,)
        return mesa_attention(q, k, v, lam_h, method="solve")[:, 0]  # (B, T, D)

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, T, D): the prediction of s_{t+1} at every position t."""
        if self.lam is None:
            raise RuntimeError("online-ridge: lambda is not set; call fit() or pass lam=...")
        return self.positions(episode, self.lam).to(episode.query_x.dtype)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self.predict_positions(episode)[:, -1]


class OnlineGD(iclbench.Learner):
    name = "online-gd"

    class Config(iclbench.LearnerConfig):
        eta: float | None = Field(None, description="fixed learning rate; None: the training-loss minimiser")
        tune_tasks: int = Field(2048, ge=1)

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.eta = self.config.eta

    @staticmethod
    def step(episode: iclbench.Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) the unit-rate step at every position, and the targets."""
        q, k, v, target = transition_qkv(episode)
        return linear_attention(q, k, v)[:, 0], target

    def fit(self, task, *, generator, device) -> None:
        if self.config.eta is not None:
            return
        a, target = self.step(training_sample(task, self.config.tune_tasks, generator, device))
        self.eta = float((a * target).sum() / a.pow(2).sum())  # argmin_eta sum ||eta a - target||^2

    def hyperparameters(self) -> dict:
        return {"eta": self.eta}

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        if self.eta is None:
            raise RuntimeError("online-gd: eta is not set; call fit() or pass eta=...")
        return (self.eta * self.step(episode)[0]).to(episode.query_x.dtype)

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self.predict_positions(episode)[:, -1]


@iclbench.hookimpl
def register_learners(register) -> None:
    register(OnlineRidge)
    register(OnlineGD)
