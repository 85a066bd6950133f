"""Execution backends: how the units of an evaluation run, chosen with `--executor NAME`.

A unit is one (learner, suite, seed) evaluation: its training, through the shared checkpoint
cache, and its records (`iclbench.units`). The `local` executor runs an evaluation in this
process as it always has, trainings ahead in `--jobs` worker processes; a distributed one
(`ray`) runs each unit wherever its scheduler puts it, and this process, the driver, merges
the units' records into `results.jsonl` in the plan's order, so the file never depends on
which unit finished first. Executors are plugins: `register_executors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from iclbench.config import ConfigError
from iclbench.lookup import CatalogView
from iclbench.registry import RegistrationError

if TYPE_CHECKING:
    import torch

    from iclbench.runner import Plan
    from iclbench.store import ResultStore

Progress = Callable[[str], None]


class ExecutorError(ConfigError):
    """An executor cannot run as asked (a missing package, an unreachable cluster, resources
    no node offers, options that contradict each other): a usage error, raised before any fitting."""


@dataclass(frozen=True)
class Resources:
    """What one unit asks its scheduler for: CPUs, and GPUs, a fraction sharing one GPU.

    `gpus=None` means one GPU per unit on a CUDA device and none on a CPU."""

    cpus: float = 1.0
    gpus: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ExecutorError(f"--cpus-per-unit must be a positive number, got {self.cpus:g}")
        g = self.gpus
        if g is not None and not (math.isfinite(g) and (0 <= g <= 1 or float(g).is_integer())):
            raise ExecutorError(f"--gpus-per-unit must be 0, a fraction of one GPU (0.25: four units share it) "
                                f"or a whole number of GPUs, got {g:g}")

    def for_device(self, device: "torch.device") -> "Resources":
        """These resources with `gpus` settled for `device`; a request that contradicts it is an error."""
        cuda = device.type == "cuda"
        gpus = (1.0 if cuda else 0.0) if self.gpus is None else float(self.gpus)
        if cuda and gpus == 0:
            raise ExecutorError(f"--device {device} needs --gpus-per-unit above 0 (0.25: four units share a GPU)")
        if not cuda and gpus > 0:
            raise ExecutorError(f"--gpus-per-unit {gpus:g} with --device {device}: units would hold GPUs they never use")
        return Resources(self.cpus, gpus)

    @property
    def threads(self) -> int:
        """Torch threads a unit uses: its whole CPUs, at least one."""
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class ExecutorOptions:
    """The command line's execution options; each executor reads those it understands."""

    address: str | None = None  # --ray-address: an existing cluster; None starts a local one
    resources: Resources = field(default_factory=Resources)
    jobs: int = 1  # --jobs: the local executor's training processes
    max_retries: int = 3  # times a unit whose worker died is run again
    plugin_files: tuple[str, ...] = ()  # --plugin files, which every worker loads too
    stack_seeds: str | None = None  # --stack-seeds exact|close: the local executor trains a configuration's seeds as one model


@dataclass
class Outcome:
    """Every record an evaluation produced or found stored, in the plan's order, and one line
    per failed measurement (stored as a failed record while the run went on)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Executor:
    """Runs the plans of one command; subclass with a `name` and register with `register_executors`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options or ExecutorOptions()

    def pretrain(self, catalog: CatalogView, runs: list[tuple[str, list[str]]], seeds: list[int],
                 device: "torch.device", cache: Path | None, progress: Progress) -> None:
        """Optionally train the learners of `runs` ((suite, learner labels) pairs) into `cache`
        ahead of `evaluate`. The default trains nothing: units train what they need."""

    def evaluate(self, catalog: CatalogView, plans: "list[Plan]", store: "ResultStore", cache: Path | None,
                 progress: Progress | None = None, announce: Callable[[int], None] | None = None) -> Outcome:
        """Evaluate every plan into `store`, checkpoints in `cache`; `announce(i)` is called as
        plan i starts."""
        raise NotImplementedError(f"executor {self.name!r} does not implement evaluate()")


def checked_executor(cls: object, plugin: str) -> type[Executor]:
    """An Executor subclass with a string `name`: what `register_executors` accepts."""
    where = f"plugin {plugin!r} registered {cls!r} as an executor"
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise RegistrationError(f"{where}, but it is not a subclass of iclbench.executors.Executor")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise RegistrationError(f"{where}, but it has no string `name`")
    return cls


def select_executor(catalog: CatalogView, name: str, options: ExecutorOptions | None = None) -> Executor:
    """The executor registered as `name`, built with `options`; an unknown name is an
    UnknownNameError listing the registered ones."""
    return catalog.executors[name](options)


class OrderedMerge:
    """Appends units' records to the store in the units' order, each as soon as every unit
    before it is done: the file is the same whichever unit finishes first, and a driver
    that stops keeps every record of the finished prefix."""

    def __init__(self, store: "ResultStore") -> None:
        self.store = store
        self.finished: dict[int, list[dict[str, Any]]] = {}
        self.next = 0

    def add(self, index: int, records: list[dict[str, Any]]) -> list[int]:
        """Unit `index` is done with `records`; returns the units whose records were appended now."""
        self.finished[index] = records
        appended = []
        while self.next in self.finished:
            for record in self.finished.pop(self.next):
                self.store.append(record)
            appended.append(self.next)
            self.next += 1
        return appended
