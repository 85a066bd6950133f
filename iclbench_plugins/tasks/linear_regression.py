"""Linear regression tasks (von Oswald et al. 2023, Sec. 3): y = W x with a random teacher W.

Defaults follow the paper's reference code: N = d = 10, dy = 1, x ~ U(-0.5, 0.5)^d,
W ~ N(0, I), noiseless labels. Out-of-distribution variants change the input range or law,
the teacher scale, the context size, or replace context labels by noise (distractors).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

import iclbench
from iclbench.plugin_api import TaskShape


def laplace_inverse_cdf(u: torch.Tensor) -> torch.Tensor:
    """Unit Laplace draws from uniforms u in [0, 1). u = 0 (one draw in 2^24 in float32) would map
    to -inf, so |u - 1/2| is kept one float step below 1/2: every other draw is unchanged."""
    centred = u - 0.5  # in [-0.5, 0.5)
    half = torch.tensor(0.5, dtype=u.dtype, device=u.device)
    edge = torch.nextafter(half, torch.zeros_like(half))  # the largest float below 1/2
    return -torch.sign(centred) * torch.log1p(-2 * centred.abs().clamp_max(edge))


class LinearRegression(iclbench.Task):
    """Linear regression tasks y = W x (+ noise): the paper's base setup, with its input, teacher and context-size shifts."""

    name = "linear-regression"

    class Config(iclbench.TaskConfig):
        N: int = Field(10, ge=1, description="context size")
        d: int = Field(10, ge=1, description="input dimension")
        dy: int = Field(1, ge=1, description="output dimension")
        input: Literal["uniform", "normal", "exponential", "laplace", "mixed"] = Field(
            "uniform", description="input law; mixed: normal, exponential or laplace, one drawn per task")
        input_low: float = -0.5  # uniform only
        input_high: float = 0.5  # uniform only
        input_scale: float = Field(1.0, gt=0, description="std of normal / scale of exponential, laplace")
        input_norm: float | None = Field(None, gt=0, description="scale each task's context to this Frobenius "
                                         "norm, its query by the same factor (the reference code's OOD inputs)")
        teacher_scale: float = Field(1.0, ge=0, description="W ~ N(0, teacher_scale^2 I)")
        noise_std: float = Field(0.0, ge=0, description="label noise on every y, context and query")
        distractors: int = Field(0, ge=0, description="context labels replaced by N(0, 1) noise")

        @model_validator(mode="after")
        def _check(self):
            if self.input == "uniform" and not self.input_low < self.input_high:
                raise ValueError(f"input_low ({self.input_low}) must be below input_high ({self.input_high})")
            if self.distractors > self.N:
                raise ValueError(f"distractors ({self.distractors}) cannot exceed N ({self.N})")
            return self

    def sample_inputs(self, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
        """(B, N+1, d) inputs drawn from the configured law, the query last."""
        c = self.config
        if c.input == "mixed":
            laws = torch.stack([self.sample_law(law, shape, generator, device)
                                for law in ("normal", "exponential", "laplace")])  # (3, B, N+1, d)
            pick = torch.randint(3, (shape[0],), generator=generator, device=device)  # (B,) one law per task
            x = laws[pick, torch.arange(shape[0], device=device)]  # (B, N+1, d)
        else:
            x = self.sample_law(c.input, shape, generator, device)
        if c.input_norm is not None:
            norm = x[:, :-1].flatten(1).norm(dim=1)  # (B,) Frobenius norm of each context
            x = x * (c.input_norm / norm)[:, None, None]
        return x

    def sample_law(self, law: str, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
        c = self.config
        u = torch.rand(shape, generator=generator, device=device)
        if law == "uniform":
            return c.input_low + (c.input_high - c.input_low) * u
        if law == "normal":
            return c.input_scale * torch.randn(shape, generator=generator, device=device)
        if law == "exponential":
            return -c.input_scale * torch.log1p(-u)  # inverse CDF
        return c.input_scale * laplace_inverse_cdf(u)

    def episode_shape(self) -> TaskShape:
        """N pairs of (d, dy); sampling also holds the teacher W (dy x d), the labels of all
        N + 1 inputs, and for the mixed law the three laws' draws of every input."""
        c = self.config
        inputs = (c.N + 1) * c.d
        extra = c.dy * c.d + (c.N + 1) * c.dy + (3 * inputs if c.input == "mixed" else 0)
        return TaskShape(c.N, c.d, c.dy, extra=extra)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        W = c.teacher_scale * torch.randn(n, c.dy, c.d, generator=generator, device=device)  # (B, dy, d)
        x = self.sample_inputs((n, c.N + 1, c.d), generator, device)  # (B, N+1, d), last is the query
        y = torch.einsum("bod,bnd->bno", W, x)  # (B, N+1, dy)
        if c.noise_std > 0:
            y = y + c.noise_std * torch.randn(y.shape, generator=generator, device=device)
        context_y = y[:, :-1]
        if c.distractors:
            order = torch.rand(n, c.N, generator=generator, device=device).argsort(dim=1)
            hit = torch.zeros(n, c.N, dtype=torch.bool, device=device)
            hit.scatter_(1, order[:, : c.distractors], True)  # (B, N): k random positions per task
            noise = torch.randn(context_y.shape, generator=generator, device=device)
            context_y = torch.where(hit[..., None], noise, context_y)
        return iclbench.Episode(x[:, :-1], context_y, x[:, -1], y[:, -1])


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(LinearRegression)
