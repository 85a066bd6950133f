"""Every hook iclbench calls. Plugins implement them with `@iclbench.hookimpl`.

Each hook receives a `register` callback, so built-in and third-party plugins add
learners, task families and suites in exactly the same way.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("iclbench")
hookimpl = pluggy.HookimplMarker("iclbench")


@hookspec
def register_learners(register: Callable[[type], None]) -> None:
    """Register learners: call `register(LearnerClass)` once per `iclbench.Learner` subclass."""


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register task families: call `register(TaskClass)` once per `iclbench.Task` subclass."""


@hookspec
def register_suites(register: Callable[[object], None]) -> None:
    """Register suites: call `register(path)` with a suite `.toml` file or a folder of them.

    `path` may be a `pathlib.Path` or an `importlib.resources` Traversable, so suites
    shipped inside an installed package work.
    """


@hookspec
def register_analyses(register: Callable[[type], None]) -> None:
    """Register analyses: call `register(AnalysisClass)` once per `iclbench.analysis.Analysis` subclass."""


@hookspec
def register_reproductions(register: Callable[[type], None]) -> None:
    """Register paper reproductions: call `register(ReproductionClass)` (see `iclbench.reproduce`)."""


@hookspec
def register_executors(register: Callable[[type], None]) -> None:
    """Register execution backends: call `register(ExecutorClass)` once per
    `iclbench.executors.Executor` subclass (`local`, `ray`, ...; chosen with `--executor`)."""


@hookspec
def register_trackers(register: Callable[[type], None]) -> None:
    """Register experiment trackers: call `register(TrackerClass)` once per
    `iclbench.tracking.Tracker` subclass (chosen with `--track NAME`)."""
