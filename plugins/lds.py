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
from pydantic import Field

import iclbench
from iclbench.positions import sequence_episode


def haar_orthogonal(n: int, d: int, generator: torch.Generator, device) -> torch.Tensor:
    """(n, d, d) orthogonal matrices drawn from the Haar measure (QR with the signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, d, d, generator=generator, device=device))  # (n, d, d)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


class LinearDynamics(iclbench.Task):
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

    def transition(self, n: int, generator: torch.Generator, device):
        """A function s (n, D) -> next state before noise, drawn per task."""
        c = self.config
        W = c.spectral_radius * haar_orthogonal(n, c.D, generator, device)  # (n, D, D)
        if c.teacher == "linear":
            return lambda s: torch.einsum("nij,nj->ni", W, s)
        A = torch.randn(n, c.hidden, c.D, generator=generator, device=device) / c.D ** 0.5  # (n, H, D)
        B = torch.randn(n, c.D, c.hidden, generator=generator, device=device) / c.hidden ** 0.5  # (n, D, H)

        def step(s: torch.Tensor) -> torch.Tensor:
            f = torch.einsum("ndh,nh->nd", B, F.gelu(torch.einsum("nhd,nd->nh", A, s)))  # (n, D)
            return torch.einsum("nij,nj->ni", W, f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12))

        return step

    def states(self, n: int, *, generator: torch.Generator, device) -> torch.Tensor:
        """(n, T+1, D) states. A loop over time, batched over tasks: clipping makes the
        recurrence nonlinear, so there is no closed form to vectorise."""
        c = self.config
        step = self.transition(n, generator, device)
        s = (2 * torch.rand(n, c.D, generator=generator, device=device) - 1) * c.init_range  # (n, D)
        noise = c.noise_std * torch.randn(n, c.T, c.D, generator=generator, device=device)  # (n, T, D)
        out = [s]
        for t in range(c.T):
            s = step(s) + noise[:, t]
            if c.clip is not None:
                s = s.clamp(-c.clip, c.clip)
            out.append(s)
        return torch.stack(out, dim=1)  # (n, T+1, D)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        s = self.states(n, generator=generator, device=device)  # (n, T+1, D)
        if c.observed is not None:
            C = 0.5 * torch.randn(n, c.observed, c.D, generator=generator, device=device)  # (n, obs, D)
            s = torch.einsum("nod,ntd->nto", C, s)  # (n, T+1, obs)
        return sequence_episode(s)


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(LinearDynamics)
