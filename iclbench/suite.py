"""Suites: which task distribution a learner is fitted on and which tasks it is evaluated on.

A suite is a TOML file (data, not code):

    name = "linear-ood"
    include = "linear"                 # optional: start from another suite's train and evals
    ratio_reference = "gd"             # optional: the learner its shift plots divide by, where
                                       #   the records do not name one reference (`shift_plots`)
    [train]
    task = "linear-regression"
    config = {}
    [[eval]]
    label = "input-range=2"            # the leaderboard column
    task = "linear-regression"
    config = { input_low = -1.0, input_high = 1.0 }
    group = "input range"              # optional: plotted as loss against `value`
    value = 2.0
    in_distribution = false
    prefix_curve = false               # optional: also the error at every context length k = 1..N
    [axes]                             # optional: shift group -> its plots' x-axis label
    "input range" = "input range a: x ~ U(-a/2, a/2)^d"

`ratio_reference` and `[axes]` are read by the report layer (`suite_labels`), never by a run;
a suite inherits them from the suite it includes, its own entries first.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iclbench.config import ConfigError
from iclbench.errors import UsageError
from iclbench.lookup import CatalogView
from iclbench.registry import Registry
from iclbench.task import Task


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    config: dict[str, Any] = Field(default_factory=dict)


class EvalSpec(TaskSpec):
    label: str | None = None
    group: str | None = None
    value: float | None = None
    in_distribution: bool = False
    prefix_curve: bool = False


class SuiteFile(BaseModel):
    """The schema of one suite file."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    include: str | None = None
    train: TaskSpec | None = None
    eval: list[EvalSpec] = Field(default_factory=list)
    axes: dict[str, str] = Field(default_factory=dict)  # shift group -> x-axis label of its plots
    ratio_reference: str | None = None  # the learner shift plots divide by without one reference


@dataclass
class EvalTask:
    """One evaluation column: a configured task with its label and plot coordinates."""

    label: str
    task: Task
    group: str | None = None
    value: float | None = None
    in_distribution: bool = False
    prefix_curve: bool = False  # also record the error against context length (iclbench.prefix)


@dataclass
class Suite:
    name: str
    description: str
    train: Task
    evals: list[EvalTask]

    @classmethod
    def single(cls, task: Task) -> "Suite":
        """Train and evaluate on one task's distribution (`--task`)."""
        return cls(task.label, "", task, [EvalTask(task.label, task, in_distribution=True)])


class SuiteError(UsageError):
    """A suite file that cannot be used; the message names the file and field."""


def read_suite_file(path: Any) -> SuiteFile:
    try:
        data = tomllib.loads(path.read_text())
        return SuiteFile(**data)
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite file {path}: {err}") from None
    except ValidationError as err:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise SuiteError(f"suite file {path}: {msgs}") from None


class SuiteRegistry:
    """Suite name -> file, filled by the `register_suites` hook. A name that is not registered
    but is the path of a `.toml` file loads that file, to try a suite without a plugin."""

    def __init__(self, strict: bool = True) -> None:
        self.names: Registry[Any] = Registry("suite", strict)

    def add_path(self, path: Any, plugin: str) -> None:
        path = Path(path) if isinstance(path, str) else path
        files = sorted((p for p in path.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name) if path.is_dir() else [path]
        for f in files:
            self.names.add(read_suite_file(f).name, f, plugin)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def owner(self, name: str) -> str:
        return self.names.owner(name)

    def _file(self, name: str) -> Any:
        if name not in self.names and name.endswith(".toml") and Path(name).is_file():
            return Path(name)
        return self.names[name]

    def spec(self, name: str, _seen: tuple[str, ...] = ()) -> SuiteFile:
        """The suite's file with `include` chains resolved (train inherited, evals prepended)."""
        if name in _seen:
            raise SuiteError(f"suite {name!r} includes itself: {' -> '.join(_seen + (name,))}")
        spec = read_suite_file(self._file(name))
        if spec.include:
            base = self.spec(spec.include, _seen + (name,))
            spec = spec.model_copy(update={"train": spec.train or base.train, "eval": base.eval + spec.eval,
                                           "axes": {**base.axes, **spec.axes},
                                           "ratio_reference": spec.ratio_reference or base.ratio_reference})
        if spec.train is None:
            raise SuiteError(f"suite {name!r} has no [train] table")
        return spec

    def load(self, name: str, catalog: CatalogView) -> Suite:
        """Build the suite's tasks, validating every task name and config."""
        spec = self.spec(name)
        name, where = spec.name, f"suite {name!r}"
        train = _build_task(catalog, spec.train, f"{where} [train]")
        evals = []
        for i, e in enumerate(spec.eval):
            task = _build_task(catalog, e, f"{where} eval[{i}]")
            evals.append(EvalTask(e.label or task.label, task, e.group, e.value, e.in_distribution, e.prefix_curve))
        labels = [e.label for e in evals]
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dupes:
            raise SuiteError(f"{where} has repeated eval labels: {', '.join(dupes)}")
        if not evals:
            raise SuiteError(f"{where} has no [[eval]] entries")
        return Suite(name, spec.description, train, evals)


def _build_task(catalog: CatalogView, spec: TaskSpec, where: str) -> Task:
    try:
        return catalog.tasks[spec.task](spec.config)
    except ConfigError as err:
        raise SuiteError(f"{where}: {err}") from None
    except LookupError as err:
        raise SuiteError(f"{where}: {err}") from None
