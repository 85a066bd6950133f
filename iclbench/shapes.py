"""The sizes an estimate is made of: a task's episode dimensions (`TaskShape`) and a learner's
estimated peak memory and compute (`Workload`). Plain data, below every interface that
declares them (`Task.episode_shape`, `Learner.workload`), so none of those imports the
estimator (`iclbench.workload`) that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskShape:
    """One task's episode dimensions: N context pairs of (dx, dy), and T tokens of width D
    when the task lays out its own token sequence (`token_format`).

    `extra`: numbers per task that sampling holds besides the episode (teacher weights, the
    oracle's `truth`); memory only, not part of the shape learners see, so it is left out of
    comparisons."""

    n_context: int
    dx: int
    dy: int
    tokens: int | None = None
    token_dim: int | None = None
    token_format: str | None = None
    extra: int = field(default=0, compare=False)

    @property
    def pair_tokens(self) -> int:
        """T of the plain (x_j, y_j) token matrix: the context and the query."""
        return self.n_context + 1

    def episode_elements(self) -> int:
        """Numbers one task's episode holds (pairs, query, and tokens if any)."""
        pairs = self.n_context * (self.dx + self.dy) + self.dx + self.dy
        return pairs + (self.tokens or 0) * (self.token_dim or 0)

    def sample_elements(self) -> int:
        """Numbers sampling one task holds at its peak: the episode and the `extra`."""
        return self.episode_elements() + self.extra


@dataclass(frozen=True)
class Workload:
    """A learner's estimated need: `peak_bytes` of its largest step, `seconds` of compute
    (None: unknown), and `drivers`, the settings that make it large, for messages."""

    peak_bytes: float
    seconds: float | None = None
    drivers: str = ""

    def __or__(self, other: Workload | None) -> Workload:
        """The larger peak (its drivers) and the summed time: steps that run one after the other."""
        if other is None:
            return self
        big = self if self.peak_bytes >= other.peak_bytes else other
        seconds = None if self.seconds is None and other.seconds is None else (self.seconds or 0) + (other.seconds or 0)
        return Workload(big.peak_bytes, seconds, big.drivers)
