"""Name -> class registries filled by the plugin hooks.

Duplicate names are an error naming both plugins; unknown names suggest the closest.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from iclbench.config import StrictConfig
from iclbench.learner import Learner
from iclbench.plugins import PluginManager, call_register_hook
from iclbench.task import Task

T = TypeVar("T")


class UnknownNameError(LookupError):
    """A learner, task or suite name that no plugin registered."""

    def __str__(self) -> str:  # KeyError-style quoting would hide the suggestion
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """Two plugins registered the same name."""


def unknown(kind: str, name: str, choices: list[str]) -> UnknownNameError:
    """The error for an unknown name, suggesting the closest registered one."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(sorted(choices)) or "none registered"
    return UnknownNameError(f"unknown {kind} {name!r}{hint} (available: {listed})")


class Registry(Generic[T]):
    """Registered objects of one kind, keyed by name, remembering which plugin owns each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, tuple[T, str]] = {}

    def add(self, name: str, obj: T, plugin: str) -> None:
        if name in self._items:
            other = self._items[name][1]
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}"
            )
        self._items[name] = (obj, plugin)

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise unknown(self.kind, name, list(self._items))
        return self._items[name][0]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def owner(self, name: str) -> str:
        self[name]
        return self._items[name][1]


def _checked_class(kind: str, base: type, cls: object, plugin: str) -> type:
    """Reject registrations that would fail later with a confusing error."""
    where = f"plugin {plugin!r} registered {cls!r} as a {kind}"
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{where}, but it is not a subclass of iclbench.{base.__name__}")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{where}, but it has no string `name`")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, StrictConfig)):
        raise TypeError(f"{where}, but its Config does not subclass iclbench.{base.__name__}Config")
    return cls


@dataclass
class Catalog:
    """Everything the loaded plugins registered."""

    learners: Registry[type[Learner]]
    tasks: Registry[type[Task]]
    suites: "SuiteRegistry"
    analyses: Registry[type]
    reproductions: Registry[type]
    plugins: PluginManager


_DEFAULT: list[Catalog] = []


def default_catalog() -> Catalog:
    """The catalog of the installed entry-point plugins, built once per process.

    For plugins that refer to other registered names at run time (a task wrapping a task).
    """
    if not _DEFAULT:
        from iclbench.plugins import make_plugin_manager

        _DEFAULT.append(build_catalog(make_plugin_manager()))
    return _DEFAULT[0]


def build_catalog(pm: PluginManager) -> Catalog:
    """Call the registration hooks of every plugin in `pm`."""
    from iclbench.analysis import Analysis
    from iclbench.suite import SuiteRegistry

    learners: Registry[type[Learner]] = Registry("learner")
    tasks: Registry[type[Task]] = Registry("task")
    suites = SuiteRegistry()

    def reg_learner(cls: object, plugin: str) -> None:
        cls = _checked_class("learner", Learner, cls, plugin)
        learners.add(cls.name, cls, plugin)

    def reg_task(cls: object, plugin: str) -> None:
        cls = _checked_class("task", Task, cls, plugin)
        tasks.add(cls.name, cls, plugin)

    call_register_hook(pm, "register_learners", reg_learner)
    call_register_hook(pm, "register_tasks", reg_task)
    analyses: Registry[type] = Registry("analysis")

    def reg_analysis(cls: object, plugin: str) -> None:
        cls = _checked_class("analysis", Analysis, cls, plugin)
        analyses.add(cls.name, cls, plugin)

    reproductions: Registry[type] = Registry("reproduction")

    def reg_reproduction(cls: object, plugin: str) -> None:
        from iclbench.reproduce import Reproduction

        if not (isinstance(cls, type) and issubclass(cls, Reproduction) and isinstance(getattr(cls, "name", None), str)):
            raise TypeError(f"plugin {plugin!r} registered {cls!r}, which is not a named iclbench.reproduce.Reproduction")
        reproductions.add(cls.name, cls, plugin)

    call_register_hook(pm, "register_suites", suites.add_path)
    call_register_hook(pm, "register_analyses", reg_analysis)
    call_register_hook(pm, "register_reproductions", reg_reproduction)
    return Catalog(learners, tasks, suites, analyses, reproductions, pm)
