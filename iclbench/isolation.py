"""Every learner sees pristine tasks and never the query targets.

All learners of a seed are scored on the same evaluation tasks (paired comparisons), so one
that writes into its inputs (an in-place normalisation, `ep.query_y.zero_()`) would change
what the next learner is scored on. `guard` wraps a learner's methods: each call of `predict` (and of
the optional all-at-once forms `predict_prefixes` and `predict_positions`) gets its own copy
of the tasks with the query targets masked (NaN), so whatever it does to them reaches no one
else; a write into the copy through torch (which bumps a tensor's version counter, views
included) raises `TasksModifiedError` naming the learner, the method and the field, so its
record fails. `fit` gets its own copy of the training task (`runner.fit_for_evaluation`).
Only the metric code reads `query_y`.

A copy costs one pass over the episode's memory; the check reads counters only
(benchmarks/isolation_overhead.py measures both on a whole evaluation).
"""

from __future__ import annotations

import functools
from dataclasses import fields, replace
from typing import Any, Callable

import torch

from iclbench.episode import Episode
from iclbench.learner import Learner

GUARDED = ("predict", "predict_prefixes", "predict_positions")
"""The learner methods that receive evaluation tasks (`Learner` declares them)."""


class TasksModifiedError(RuntimeError):
    """A learner (or reference, or analysis) wrote into the tasks it was handed."""


def blind(episode: Episode) -> Episode:
    """A private copy of `episode` whose query targets are NaN: what a learner may see. Tensor
    copies keep autograd history (sensitivities are taken through `query_x`)."""
    out = episode._map(lambda t: t.clone() if t is not episode.query_y else t)
    return replace(out, query_y=torch.full_like(episode.query_y, float("nan")))


def tensors(episode: Episode) -> dict[str, torch.Tensor]:
    """Every tensor of `episode` by field name (`truth[...]` entries included)."""
    out = {f.name: getattr(episode, f.name) for f in fields(episode) if isinstance(getattr(episode, f.name), torch.Tensor)}
    out.update({f"truth[{k!r}]": v for k, v in (episode.truth or {}).items()})
    return out


def versions(episode: Episode) -> dict[str, int]:
    """Each tensor's version counter: torch bumps it on every in-place write (views included)."""
    return {name: t._version for name, t in tensors(episode).items()}


def changed_field(seen: Episode, before: dict[str, int]) -> str | None:
    """The first field of `seen` written in place since `before = versions(seen)`, or None."""
    return next((name for name, v in versions(seen).items() if v != before.get(name)), None)


def guarded_call(who: str, method: str, fn: Callable[[Episode], Any], episode: Episode) -> Any:
    """`fn(blind(episode))`, raising `TasksModifiedError` when `fn` wrote into its copy."""
    seen = blind(episode)
    before = versions(seen)
    out = fn(seen)
    bad = changed_field(seen, before)
    if bad is not None:
        raise TasksModifiedError(f"{who} modified the evaluation tasks' {bad} in {method}(); "
                                 "a learner must not write into the episode it is handed")
    return out


def guard(learner: Any, who: str | None = None) -> Any:
    """`learner` itself, its task-reading methods (`GUARDED`) replaced on the instance by ones
    that hand each call a private, target-masked copy and check it for writes. The class is
    untouched (isinstance still holds), and guarding twice changes nothing."""
    if getattr(learner, "_iclbench_guarded", False):
        return learner
    who = who or f"learner {getattr(learner, 'label', learner)!r}"
    for name in GUARDED:
        method = getattr(learner, name, None)
        default = getattr(Learner, name, None)
        if callable(method) and getattr(type(learner), name, None) is not default:  # a default declines: nothing to copy
            setattr(learner, name, functools.partial(guarded_call, who, name, method))
    learner._iclbench_guarded = True
    return learner
