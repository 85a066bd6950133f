"""The batch every learner sees: B independent in-context regression tasks."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class Episode:
    """B tasks, each N context pairs (x_i, y_i) and one query x whose y is to be predicted.

    context_x: (B, N, dx), context_y: (B, N, dy), query_x: (B, dx), query_y: (B, dy).
    `truth` is for oracle references only (a Kalman filter knows the system's matrices); learners
    that compete must not read it. It follows the tasks through to / slice / take.
    """

    context_x: torch.Tensor
    context_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    tokens: torch.Tensor | None = None  # (B, T, D) a task-made token sequence, query last
    token_format: str | None = None  # what `tokens` holds, e.g. "alternating"; None: plain pairs only
    truth: dict[str, torch.Tensor] | None = None  # per-task generative parameters, each (B, ...), for oracles

    def __post_init__(self) -> None:
        cx, cy, qx, qy = self.context_x, self.context_y, self.query_x, self.query_y
        for name in ("context_x", "context_y", "query_x", "query_y"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise TypeError(f"Episode.{name} must be a torch.Tensor")
        if (self.tokens is None) != (self.token_format is None):
            raise ValueError("Episode.tokens and Episode.token_format must be given together")
        if self.tokens is not None and (self.tokens.ndim != 3 or self.tokens.shape[0] != cx.shape[0]):
            raise ValueError(f"Episode.tokens must have shape (B={cx.shape[0]}, T, D), got {tuple(self.tokens.shape)}")
        expected = {
            "context_x": (3, "(B, N, dx)"),
            "context_y": (3, "(B, N, dy)"),
            "query_x": (2, "(B, dx)"),
            "query_y": (2, "(B, dy)"),
        }
        for name, (ndim, shape) in expected.items():
            t = getattr(self, name)
            if t.ndim != ndim:
                raise ValueError(f"Episode.{name} must have shape {shape}, got {tuple(t.shape)}")
        B, N, dx = cx.shape
        checks = [
            ("context_y", cy.shape[:2] == (B, N), f"(B={B}, N={N}, dy)"),
            ("query_x", qx.shape == (B, dx), f"(B={B}, dx={dx})"),
            ("query_y", qy.shape == (B, cy.shape[2]), f"(B={B}, dy={cy.shape[2]})"),
        ]
        for name, ok, shape in checks:
            if not ok:
                raise ValueError(
                    f"Episode.{name} must have shape {shape}, got {tuple(getattr(self, name).shape)}"
                )
        for name, t in (self.truth or {}).items():
            if not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != B:
                raise ValueError(f"Episode.truth[{name!r}] must be a tensor of shape (B={B}, ...)")
        truth = list((self.truth or {}).values())
        devices = {t.device for t in (cx, cy, qx, qy, self.tokens, *truth) if t is not None}
        if len(devices) > 1:
            raise ValueError(f"Episode tensors must share one device, got {sorted(map(str, devices))}")

    @property
    def batch_size(self) -> int:
        return self.context_x.shape[0]

    @property
    def n_context(self) -> int:
        return self.context_x.shape[1]

    @property
    def dx(self) -> int:
        return self.context_x.shape[2]

    @property
    def dy(self) -> int:
        return self.context_y.shape[2]

    @property
    def device(self) -> torch.device:
        return self.context_x.device

    def nonfinite(self) -> dict[str, int]:
        """Per tensor field, how many tasks hold a NaN or an infinity (fields with none left out)."""
        out = {}
        for name in ("context_x", "context_y", "query_x", "query_y", "tokens"):
            t = getattr(self, name)
            if t is not None and t.is_floating_point():
                bad = int((~torch.isfinite(t)).flatten(1).any(dim=1).sum())
                if bad:
                    out[name] = bad
        return out

    def _map(self, fn) -> Episode:
        """Apply `fn` to every tensor field, and to every tensor of `truth`."""
        out = {f.name: fn(getattr(self, f.name)) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        if self.truth is not None:
            out["truth"] = {k: fn(v) for k, v in self.truth.items()}
        return replace(self, **out)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Episode:
        """A copy on `device` and/or in floating `dtype`."""
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def slice(self, start: int, stop: int) -> Episode:
        """Tasks start..stop-1 of the batch (a view, no copy)."""
        return self._map(lambda t: t[start:stop])

    def prefix(self, k: int) -> Episode:
        """The same tasks with only their first `k` context pairs (plain pairs only)."""
        if self.tokens is not None:
            raise ValueError("a token sequence has no context prefix to take")
        return replace(self, context_x=self.context_x[:, :k], context_y=self.context_y[:, :k])

    def take(self, index: torch.Tensor) -> Episode:
        """The tasks at `index` (B',) of the batch, repeats allowed (a copy)."""
        return self._map(lambda t: t[index])

    def with_query_x(self, query_x: torch.Tensor) -> Episode:
        """The same tasks with another query input (used for sensitivities)."""
        tokens = self.tokens
        if tokens is not None:  # the query token's first dx entries are the query input
            tokens = torch.cat([tokens[:, :-1], torch.cat([query_x[:, None], tokens[:, -1:, self.dx:]], -1)], 1)
        return replace(self, query_x=query_x, tokens=tokens)
