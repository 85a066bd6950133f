"""Whether a training had converged when its budget ran out: the slope of its held-out loss
over the last part of training, with a 95 % interval.

A claim that fails on a model still improving should say "budget", not blame the model; this
is the measured basis for saying so. The slope is ordinary least squares of the held-out loss
against the step over the last `TAIL` of the curve's rows (at least 3), its interval Student t
on the residuals; the loss is still falling when the whole interval lies below zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from iclbench.metrics import t975

TAIL = 0.2  # the fraction of the curve's rows the slope is fitted on
PER = 1000  # slopes are reported per this many steps


@dataclass(frozen=True)
class Trend:
    """The held-out loss's slope per `PER` steps near the end of training, ± its 95 % CI."""

    slope: float
    ci: float
    last_step: float
    last_loss: float
    rows: int

    @property
    def still_falling(self) -> bool:
        return self.slope + self.ci < 0

    def text(self) -> str:
        return (f"held-out loss still falling at step {self.last_step:.0f} ({self.slope:+.3g} ± {self.ci:.2g} "
                f"per {PER} steps over its last {self.rows} evaluations)")

    def as_dict(self) -> dict[str, Any]:
        return {"slope_per_1000_steps": self.slope, "ci95": self.ci, "still_falling": self.still_falling,
                "rows": self.rows}


def trend(curve: list[dict[str, Any]], column: str = "eval_loss") -> Trend | None:
    """The `Trend` of `column` in a training curve; None with fewer than 3 finite rows in its tail."""
    rows = [(float(r["step"]), float(r[column])) for r in curve
            if r.get(column) is not None and math.isfinite(float(r[column]))]
    tail = rows[-max(3, math.ceil(TAIL * len(rows))):]
    n = len(tail)
    if n < 3:
        return None
    mx, my = sum(x for x, _ in tail) / n, sum(y for _, y in tail) / n
    sxx = sum((x - mx) ** 2 for x, _ in tail)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in tail) / sxx
    residual = sum((y - my - b * (x - mx)) ** 2 for x, y in tail) / (n - 2)
    ci = t975(n - 2) * math.sqrt(residual / sxx)
    return Trend(b * PER, ci * PER, tail[-1][0], tail[-1][1], n)
