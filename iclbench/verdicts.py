"""Three-valued verdicts: a claim holds, does not hold, or is inconclusive, decided on an
interval against a tolerance fixed before the result, with the reason built from the numbers.

An interval is an estimate ± its 95 % CI half-width. For a paired comparison that CI is
Student t over the seeds' means, each of which averages the evaluation tasks, so it carries
both task-to-task and seed-to-seed variation (one seed: the paired CI over its tasks).

- `within(x, ci, tol)`: |x| < tol. Holds when the whole interval lies inside (-tol, tol);
  does not hold when it lies wholly outside; otherwise inconclusive.
- `above(x, ci, bound)` / `below(x, ci, bound)`: one-sided, the same three ways.

An inconclusive verdict says how many seeds would resolve it: the CI shrinks about as
1 / sqrt(seeds), so resolving a margin m from a half-width c over n seeds takes n (c / m)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

INCONCLUSIVE = None  # the third value of `Verdict.holds`


@dataclass(frozen=True)
class Verdict:
    """holds: True, False, or None (inconclusive); why: computed from the numbers, empty when
    the claim holds."""

    holds: bool | None
    why: str = ""


def resolving(ci: float, margin: float, seeds: int) -> str:
    """How many seeds would bring a half-width `ci` (over `seeds`) below `margin`."""
    if margin <= 0 or not math.isfinite(ci):
        return "the estimate sits on the tolerance: no number of seeds resolves it"
    need = math.ceil(max(seeds, 1) * (ci / margin) ** 2)
    return f"about {need} seeds would resolve it (now {seeds})"


def pct(x: float) -> str:
    return f"{x:+.1%}"


def within(x: float, ci: float, tol: float, seeds: int, what: str, unit=pct) -> Verdict:
    """|x| < tol on the interval x ± ci (`what` names x in the reason; `unit` formats numbers)."""
    lo, hi = x - ci, x + ci
    shown = f"{what} {unit(x)} ± {unit(abs(ci)).lstrip('+')}"
    if -tol < lo and hi < tol:
        return Verdict(True)
    if lo >= tol or hi <= -tol:
        return Verdict(False, f"{shown}: the whole interval lies beyond ±{unit(tol).lstrip('+')}")
    margin = tol - abs(x)
    side = "inside" if margin > 0 else "outside"
    return Verdict(INCONCLUSIVE, f"{shown} is {side} ±{unit(tol).lstrip('+')} but its interval crosses it: "
                                 + resolving(ci, abs(margin), seeds))


def above(x: float, ci: float, bound: float, seeds: int, what: str, unit=pct) -> Verdict:
    """x > bound on the interval x ± ci."""
    shown = f"{what} {unit(x)} ± {unit(abs(ci)).lstrip('+')}"
    if x - ci > bound:
        return Verdict(True)
    if x + ci <= bound:
        return Verdict(False, f"{shown}: the whole interval lies at or below {unit(bound)}")
    return Verdict(INCONCLUSIVE, f"{shown} straddles {unit(bound)}: " + resolving(ci, abs(x - bound), seeds))


def below(x: float, ci: float, bound: float, seeds: int, what: str, unit=pct) -> Verdict:
    """x < bound on the interval x ± ci."""
    shown = f"{what} {unit(x)} ± {unit(abs(ci)).lstrip('+')}"
    if x + ci < bound:
        return Verdict(True)
    if x - ci >= bound:
        return Verdict(False, f"{shown}: the whole interval lies at or above {unit(bound)}")
    return Verdict(INCONCLUSIVE, f"{shown} straddles {unit(bound)}: " + resolving(ci, abs(x - bound), seeds))


def point(ok: bool, why: str) -> Verdict:
    """A verdict on a quantity without an interval (a count, a construction's exact error)."""
    return Verdict(True) if ok else Verdict(False, why)


def all_of(verdicts: Iterable[Verdict]) -> Verdict:
    """Every part must hold: any part that does not makes the claim fail; otherwise any
    inconclusive part makes it inconclusive. The reasons are those of the deciding parts."""
    verdicts = list(verdicts)
    for value in (False, INCONCLUSIVE):
        deciding = [v.why for v in verdicts if v.holds is value]
        if deciding:
            return Verdict(value, "; ".join(w for w in deciding if w))
    return Verdict(True)


def label(holds: bool | None) -> str:
    """The verdict as a board shows it."""
    return {True: "yes", False: "no", None: "inconclusive"}[holds]


verdict_label = label  # the name plugins import it by
