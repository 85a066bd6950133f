"""Sequence tasks of von Oswald et al. (2023), "Uncovering mesa-optimization algorithms in
Transformers": a linear dynamical system per task, observed fully or through a random
projection, or a nonlinear teacher; the learner predicts every next state.

Defaults follow the paper's reference code: D = 10, T = 50 predictions (51 states),
s_1 ~ U(-1, 1)^D, s_{t+1} = W s_t + sigma * eps with W Haar-orthogonal per task, sigma = 0.01,
states clipped to +-10. Episodes are sequence episodes (`iclbench.positions`): every pair
learner reads the transitions (s_t, s_{t+1}), and the loss is recorded at every position.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import SEQUENCE, sequence_episode, TaskShape


def haar_orthogonal(n: int, d: int, generator: torch.Generator, device) -> torch.Tensor:
    """(n, d, d) orthogonal matrices drawn from the Haar measure (QR with the signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, d, d, generator=generator, device=device))  # (n, d, d)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


class LinearDynamics(iclbench.Task):
    """Sequences of a linear dynamical system s_t+1 = W s_t + noise, W orthogonal per sequence (mesa paper)."""

    name = "lds"

    class Config(iclbench.TaskConfig):
        D: int = Field(10, ge=1, description="state dimension")
        T: int = Field(50, ge=2, description="predictions per sequence (T + 1 states)")
        noise_std: float = Field(0.01, ge=0, description="sigma of the transition noise")
        spectral_radius: float = Field(1.0, gt=0, description="W = radius x a Haar-orthogonal matrix")
        init_range: float = Field(1.0, gt=0, description="s_1 ~ U(-init_range, init_range)^D")
        clip: float | None = Field(10.0, gt=0, description="states clipped to +-clip after each step; None: off")
        observed: int | None = Field(None, ge=1, description="partially observed: the sequence is o_t = C s_t, "
                                     "C (observed x D) ~ 0.5 N(0, 1) per task; None: the states themselves")
        teacher: Literal["linear", "mlp"] = Field("linear", description="mlp: s_t+1 = W f(s_t) / |f(s_t)| + noise, "
                                                  "f(s) = B gelu(A s), A, B random per task")
        hidden: int = Field(40, ge=1, description="width of the mlp teacher's f")
        active: int | None = Field(None, ge=1, description="a smaller system in the same state space: only the "
                                   "first `active` coordinates move, the rest stay 0; None: all D")

        @model_validator(mode="after")
        def _active_within_D(self):
            if self.active is not None and self.active > self.D:
                raise ValueError(f"active={self.active} exceeds D={self.D}")
            return self

    @property
    def dims(self) -> int:
        """The coordinates that move (`active`, default all D)."""
        return self.config.active or self.config.D

    def transition(self, n: int, generator: torch.Generator, device):
        """A function s (n, k) -> next state before noise, drawn per task (k = `dims`), and W (n, k, k)."""
        c, k = self.config, self.dims
        W = c.spectral_radius * haar_orthogonal(n, k, generator, device)  # (n, k, k)
        if c.teacher == "linear":
            return (lambda s: torch.einsum("nij,nj->ni", W, s)), W
        A = torch.randn(n, c.hidden, k, generator=generator, device=device) / k ** 0.5  # (n, H, k)
        B = torch.randn(n, k, c.hidden, generator=generator, device=device) / c.hidden ** 0.5  # (n, k, H)

        def step(s: torch.Tensor) -> torch.Tensor:
            f = torch.einsum("ndh,nh->nd", B, F.gelu(torch.einsum("nhd,nd->nh", A, s)))  # (n, D)
            return torch.einsum("nij,nj->ni", W, f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12))

        return step, W

    def states(self, n: int, *, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, T+1, D) states and W (n, D, D). A loop over time, batched over tasks: clipping
        makes the recurrence nonlinear, so there is no closed form to vectorise."""
        c, k = self.config, self.dims
        step, W = self.transition(n, generator, device)
        s = (2 * torch.rand(n, k, generator=generator, device=device) - 1) * c.init_range  # (n, k)
        noise = c.noise_std * torch.randn(n, c.T, k, generator=generator, device=device)  # (n, T, k)
        out = [s]
        for t in range(c.T):
            s = step(s) + noise[:, t]
            if c.clip is not None:
                s = s.clamp(-c.clip, c.clip)
            out.append(s)
        pad = (0, c.D - k)  # the coordinates that stay 0
        return F.pad(torch.stack(out, dim=1), pad), F.pad(W, pad + pad)  # (n, T+1, D), (n, D, D)

    def episode_shape(self) -> TaskShape:
        """A sequence episode of T + 1 states of width `observed` (else D): T - 1 transitions,
        T tokens. Sampling also holds W and its QR draw (D x D each), the noise, the states once
        more, the projection C (observed x D) and the mlp teacher's A and B (hidden x D each)."""
        c = self.config
        width, k = c.observed or c.D, self.dims
        states = (c.T + 1) * c.D
        extra = 3 * c.D * c.D + c.T * k + 2 * states + (width * c.D if c.observed else 0)
        extra += 2 * c.hidden * k if c.teacher == "mlp" else 0
        return TaskShape(c.T - 1, width, width, c.T, width, SEQUENCE, extra=extra)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        s, W = self.states(n, generator=generator, device=device)  # (n, T+1, D), (n, D, D)
        C = torch.eye(c.D, device=device).expand(n, c.D, c.D)  # (n, D, D) fully observed
        if c.observed is not None:
            C = 0.5 * torch.randn(n, c.observed, c.D, generator=generator, device=device)  # (n, obs, D)
            s = torch.einsum("nod,ntd->nto", C, s)  # (n, T+1, obs)
        truth = None
        if c.teacher == "linear":  # what a Kalman filter needs; the clip is left out (it rarely binds)
            full = torch.ones(n, device=device)  # (n,)
            truth = {"W": W, "C": C, "noise_std": c.noise_std * full, "init_range": c.init_range * full,
                     "active": self.dims * full}
        return sequence_episode(s, truth)


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(LinearDynamics)
