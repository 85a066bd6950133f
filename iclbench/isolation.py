"""Every learner sees pristine tasks and never the query targets.

All learners of a seed are scored on the same evaluation tasks (paired comparisons), so one
that writes into its inputs (an in-place normalisation, `ep.query_y.zero_()`) would change
what the next learner is scored on. `Guarded` wraps a learner: each call of `predict` (and of
the optional all-at-once forms `predict_prefixes` and `predict_positions`) gets its own copy
of the tasks with the query targets masked (NaN), and the copy is compared with the tasks
afterwards: a learner that changed them raises `TasksModifiedError` naming the learner, the
method and the field, so its record fails while everyone else's stay untouched. `fit` gets
its own copy of the training task. Only the metric code reads `query_y`.

A copy costs one pass over the episode's memory and the comparison another; on closed-form
learners over 10^5 tasks both are a small share of the predictions (README, "Isolation").
"""

from __future__ import annotations

import copy
from dataclasses import fields, replace
from typing import Any, Callable

import torch

from iclbench.episode import Episode

GUARDED = ("predict", "predict_prefixes", "predict_positions")
"""The learner methods that receive evaluation tasks (`Learner` declares them)."""


class TasksModifiedError(RuntimeError):
    """A learner (or reference, or analysis) wrote into the tasks it was handed."""


def blind(episode: Episode) -> Episode:
    """A copy of `episode` whose query targets are NaN: what a learner may see. Tensor copies
    keep autograd history (sensitivities are taken through `query_x`)."""
    def own(t: torch.Tensor) -> torch.Tensor:
        return t.clone()
    out = episode._map(own)
    return replace(out, query_y=torch.full_like(episode.query_y, float("nan")))


def changed_field(seen: Episode, source: Episode) -> str | None:
    """The first field of `seen` (a `blind` copy of `source`) whose values differ from
    `source`'s, the query targets checked to be still masked; None when nothing changed."""
    for f in fields(source):
        a, b = getattr(seen, f.name), getattr(source, f.name)
        if not isinstance(b, torch.Tensor):
            continue
        if f.name == "query_y":
            if not (isinstance(a, torch.Tensor) and a.shape == b.shape and bool(a.isnan().all())):
                return "query_y"
        elif not (isinstance(a, torch.Tensor) and a.shape == b.shape and torch.equal(a.detach(), b.detach())):
            return f.name
    for name, t in (source.truth or {}).items():
        a = (seen.truth or {}).get(name)
        if not (isinstance(a, torch.Tensor) and a.shape == t.shape and torch.equal(a, t)):
            return f"truth[{name!r}]"
    return None


def guarded_call(who: str, method: str, fn: Callable[[Episode], Any], episode: Episode) -> Any:
    """`fn(blind(episode))`, raising `TasksModifiedError` when `fn` changed its copy."""
    seen = blind(episode)
    out = fn(seen)
    bad = changed_field(seen, episode)
    if bad is not None:
        raise TasksModifiedError(f"{who} modified the evaluation tasks' {bad} in {method}(); "
                                 "a learner must not write into the episode it is handed")
    return out


class Guarded:
    """A learner whose task-reading methods each get a private, target-masked copy and are
    checked for writes; every other attribute is the learner's own."""

    def __init__(self, learner: Any, who: str | None = None) -> None:
        self._learner = learner
        self._who = who or f"learner {getattr(learner, 'label', learner)!r}"

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._learner, name)
        if name in GUARDED and callable(value):
            return lambda episode: guarded_call(self._who, name, value, episode)
        return value

    def fit(self, task: Any, **kwargs: Any) -> None:
        """Fit on a private copy of the training task, so a learner cannot change the task
        the next learner is fitted on."""
        self._learner.fit(copy.deepcopy(task), **kwargs)

    @property
    def learner(self) -> Any:
        """The wrapped learner."""
        return self._learner
