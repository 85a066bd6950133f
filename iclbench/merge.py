"""Merging records from several result folders: duplicates and conflicts.

Two people's runs can hold the same measurement: the same (suite, learner, task, seed,
reference). When their numbers agree one copy is kept silently; when they differ (in the
number of evaluation tasks or in a metric value) the records conflict and a rule picks one.
Every rule is independent of the order the records were read in, so a merged leaderboard
does not depend on which folder came first.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

RULES = ("prefer-most-tasks", "newest", "error")
STATUS_RANK = {"ok": 0, "diverged": 1, "failed": 2}

Record = dict[str, Any]


def status(r: Record) -> str:
    """A record's status; records written before statuses existed are "ok"."""
    return r.get("status") or "ok"


def measurement(r: Record) -> tuple[str, str, str, Any, str]:
    """What makes two records the same measurement: (suite, label, task_label, seed, align_to)."""
    return r["suite"], r["label"], r["task_label"], r["seed"], r.get("align_to") or ""


def numbers(r: Record) -> str:
    """The record's numbers as canonical text: equal text means a harmless duplicate (NaN equals NaN here)."""
    return json.dumps({"n_tasks": r.get("n_tasks"), "status": status(r), "metrics": r.get("metrics") or {}}, sort_keys=True)


def fingerprint(r: Record) -> str:
    """A stable hash of the whole record: the last tie-break, so ties never fall to input order."""
    return hashlib.sha256(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest()


def created(r: Record) -> float:
    """`created_at` as a UTC timestamp (naive times read as UTC); records without one are oldest."""
    text = r.get("created_at")
    if not text:
        return -math.inf
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return -math.inf
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def preference(r: Record) -> tuple:
    """Sort key of the default rule, best first: more tasks, then ok over diverged over failed, then
    newest, then the record hash."""
    return -(r.get("n_tasks") or 0), STATUS_RANK.get(status(r), 3), -created(r), fingerprint(r)


def newest_first(r: Record) -> tuple:
    """Sort key of the "newest" rule: newest first, ties broken as by the default rule."""
    return -created(r), *preference(r)


KEYS: dict[str, Callable[[Record], tuple]] = {"prefer-most-tasks": preference, "newest": newest_first, "error": preference}


class ConflictError(ValueError):
    """Raised by the "error" rule: records of one measurement disagree."""


def summary(r: Record) -> str:
    loss = (r.get("metrics") or {}).get("loss")
    shown = "none" if loss is None else f"{loss:.6g}"
    return f"n_tasks {r.get('n_tasks')}, loss {shown}, status {status(r)}, created {r.get('created_at') or 'unknown'}"


@dataclass(frozen=True)
class Conflict:
    """Records of one measurement whose numbers differ; `records[0]` is the one kept."""

    suite: str
    learner: str
    task: str
    seed: Any
    reference: str
    records: tuple[Record, ...]

    def describe(self) -> str:
        where = f"suite {self.suite!r}, learner {self.learner!r}, task {self.task!r}, seed {self.seed}"
        where += f", aligned to {self.reference!r}" if self.reference else ""
        kept, *dropped = self.records
        return f"{where}: kept ({summary(kept)}); dropped " + "; ".join(f"({summary(r)})" for r in dropped)


def resolve_conflicts(records: list[Record], rule: str = "prefer-most-tasks") -> tuple[list[Record], list[Conflict]]:
    """One record per measurement, and the conflicts met on the way.

    rule "prefer-most-tasks" (default) keeps the most evaluation tasks, then status ok over
    diverged over failed, then the newest `created_at`, then the record with the smallest hash;
    "newest" keeps the newest first; "error" raises a ConflictError (a ValueError) listing each
    conflict. Duplicates with the same
    numbers are dropped without a conflict. Both lists come in a canonical order.
    """
    if rule not in RULES:
        raise ValueError(f"unknown conflict rule {rule!r}; choose from {', '.join(RULES)}")
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[measurement(r)].append(r)
    kept, conflicts = [], []
    for key in sorted(groups, key=lambda k: json.dumps(k, default=str)):
        group = sorted(groups[key], key=KEYS[rule])
        kept.append(group[0])
        if len({numbers(r) for r in group}) > 1:
            distinct = {numbers(r): r for r in reversed(group)}  # the best record of each distinct set of numbers
            ranked = tuple(sorted(distinct.values(), key=KEYS[rule]))
            conflicts.append(Conflict(*key, ranked))
    if rule == "error" and conflicts:
        raise ConflictError(f"{len(conflicts)} conflicting measurement(s):\n" + "\n".join(f"- {c.describe()}" for c in conflicts))
    return kept, conflicts
