"""Alternating-token format for any regression task (von Oswald et al. 2023, Sec. 5, Prop. 3).

Tokens x_1, (0, y_1), x_2, (0, y_2), ..., x_query, each [x-slot (dx), y-slot (dy), sinusoidal
positional encoding (P)]: x tokens carry (x_j, 0), label tokens (0, y_j), the query (x, 0).
The episode keeps the usual pairs too, so plain learners (gd, least-squares) work unchanged;
token learners read `episode.tokens` when `episode.token_format == "alternating"`.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

import iclbench
from iclbench.plugin_api import default_catalog, TaskShape

FORMAT = "alternating"


def positional_encoding(positions: int, size: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """(positions, size) sinusoidal encodings: pairs (sin w_k p, cos w_k p), w_k = 10000^(-2k/size)."""
    p = torch.arange(positions, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    w = 10000.0 ** (-torch.arange(0, size, 2, dtype=torch.float64, device=device) / size)  # (size/2,)
    enc = torch.stack([torch.sin(p * w), torch.cos(p * w)], dim=-1).reshape(positions, size)  # (T, size)
    return enc.to(dtype)


def shift_matrix(size: int) -> torch.Tensor:
    """(size, size) R with encoding(p + 1) = R encoding(p): a rotation by w_k per frequency pair."""
    w = 10000.0 ** (-torch.arange(0, size, 2, dtype=torch.float64) / size)
    R = torch.zeros(size, size, dtype=torch.float64)
    c, s = torch.cos(w), torch.sin(w)
    i = torch.arange(0, size, 2)
    R[i, i], R[i, i + 1], R[i + 1, i], R[i + 1, i + 1] = c, s, -s, c  # (sin, cos) pairs
    return R


def alternating_tokens(episode: iclbench.Episode, pos_dim: int) -> torch.Tensor:
    """(B, 2N+1, dx+dy+P) alternating tokens of a plain episode."""
    B, N, dx = episode.context_x.shape
    dy = episode.dy
    z = episode.context_x.new_zeros(B, 2 * N + 1, dx + dy + pos_dim)
    z[:, 0:-1:2, :dx] = episode.context_x  # x tokens at even positions
    z[:, 1::2, dx:dx + dy] = episode.context_y  # label tokens at odd positions
    z[:, -1, :dx] = episode.query_x
    z[..., dx + dy:] = positional_encoding(2 * N + 1, pos_dim, dtype=z.dtype, device=z.device)
    return z


class Alternating(iclbench.Task):
    """A task's pairs laid out as alternating tokens x_j, (0, y_j) with positional encodings (Sec. 5: copying circuits)."""

    name = "alternating"

    class Config(iclbench.TaskConfig):
        base: str = Field("linear-regression", description="the task family whose pairs are laid out")
        base_config: dict[str, Any] = Field(default_factory=dict)
        # the reference code uses 10 dims, but then no position among 21 tokens singles out its
        # successor for the copy construction (the query must match itself); 12 is the least
        # that works for N = 10, and 20 leaves a margin for longer contexts
        pos_dim: int = Field(20, ge=2, description="size of the sinusoidal positional encoding (even)")

        @field_validator("pos_dim")
        @classmethod
        def _even(cls, v: int) -> int:
            if v % 2:
                raise ValueError(f"pos_dim must be even, got {v}")
            return v

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        if self.config.base == self.name:
            raise ValueError("alternating: base cannot be 'alternating' itself")
        self.base = default_catalog().tasks[self.config.base](self.config.base_config)

    def episode_shape(self) -> TaskShape | None:
        """The base task's pairs with 2N + 1 tokens of width dx + dy + pos_dim (the base's own
        tokens, if any, are not kept); None when the base gives no shape."""
        base = self.base.episode_shape()
        if base is None:
            return None
        width = base.dx + base.dy + self.config.pos_dim
        return TaskShape(base.n_context, base.dx, base.dy, 2 * base.n_context + 1, width, FORMAT,
                         extra=base.extra + base.episode_elements())

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        ep = self.base.sample(n, generator=generator, device=device)
        return iclbench.Episode(ep.context_x, ep.context_y, ep.query_x, ep.query_y,
                                tokens=alternating_tokens(ep, self.config.pos_dim), token_format=FORMAT)


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(Alternating)
