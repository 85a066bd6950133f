"""Sine-wave regression (von Oswald et al. 2023, Sec. 5): y = a sin(x + phase), one task per (a, phase).

Amplitude a ~ U(0.1, 5) and phase ~ U(0, pi) are drawn independently per task; inputs
x ~ U(-5, 5); N = 10 context points. A nonlinear problem: linear learners fail, kernel
methods and Transformers with MLPs (GD on learned features) do well.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import TaskShape


class SineWave(iclbench.Task):
    """Sine-wave regression y = a sin(x + phase) (Sec. 5: GD on deep features)."""

    name = "sine"

    class Config(iclbench.TaskConfig):
        N: int = Field(10, ge=1, description="context size")
        amplitude_low: float = Field(0.1, gt=0)
        amplitude_high: float = 5.0
        phase_low: float = 0.0
        phase_high: float = math.pi
        x_low: float = -5.0
        x_high: float = 5.0

        @model_validator(mode="after")
        def _ranges(self):
            for a in ("amplitude", "phase", "x"):
                lo, hi = getattr(self, f"{a}_low"), getattr(self, f"{a}_high")
                if not lo < hi:
                    raise ValueError(f"{a}_low ({lo}) must be below {a}_high ({hi})")
            return self

    def episode_shape(self) -> TaskShape:
        """N scalar pairs; sampling also holds all N + 1 inputs and labels once more."""
        return TaskShape(self.config.N, 1, 1, extra=2 * (self.config.N + 1) + 2)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        u = torch.rand(n, 2, generator=generator, device=device)  # (B, 2): amplitude, phase
        amp = c.amplitude_low + (c.amplitude_high - c.amplitude_low) * u[:, :1]  # (B, 1)
        phase = c.phase_low + (c.phase_high - c.phase_low) * u[:, 1:]  # (B, 1)
        x = c.x_low + (c.x_high - c.x_low) * torch.rand(n, c.N + 1, generator=generator, device=device)  # (B, N+1)
        y = amp * torch.sin(x + phase)  # (B, N+1)
        return iclbench.Episode(x[:, :-1, None], y[:, :-1, None], x[:, -1:], y[:, -1:])


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(SineWave)
