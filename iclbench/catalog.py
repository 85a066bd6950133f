"""The catalog: every learner, task, suite, analysis and reproduction the loaded plugins registered.

It sits above the kinds it collects (registry, suites, analyses, reproductions), so none of
them needs to know the others. A strict catalog refuses a name registered twice; a lenient
one (for `iclbench list` and `plugins`) keeps the first and lists the clash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iclbench.analysis import Analysis
from iclbench.learner import Learner
from iclbench.plugins import PluginManager, call_register_hook
from iclbench.registry import DuplicateNameError, Registry, checked_class
from iclbench.suite import SuiteRegistry
from iclbench.task import Task

if TYPE_CHECKING:  # reproductions run evaluations, which look names up here: known by shape only
    from iclbench.reproduce import Reproduction


@dataclass
class Catalog:
    """Everything the loaded plugins registered."""

    learners: Registry[type[Learner]]
    tasks: Registry[type[Task]]
    suites: SuiteRegistry
    analyses: Registry[type[Analysis]]
    reproductions: "Registry[type[Reproduction]]"
    plugins: PluginManager
    _file_hashes: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def clashes(self) -> list[DuplicateNameError]:
        """Names registered twice (only a lenient catalog holds any)."""
        regs = (self.learners, self.tasks, self.suites.names, self.analyses, self.reproductions)
        return [c for r in regs for c in r.clashes]

    def provenance(self, kind: str, name: str) -> dict[str, Any]:
        """Where the code of learner or task `name` comes from: its plugin, the plugin's
        distribution and version (or file), and for a single-file plugin the file's hash, so a
        record made by other code is never taken for this one's."""
        registry = {"learner": self.learners, "task": self.tasks}[kind]
        plugin = registry.owner(name)
        source = self.plugins.sources.get(plugin, "?")
        if source not in self._file_hashes:  # once per process: the code this process loaded
            path = Path(source)
            self._file_hashes[source] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                         if source.endswith(".py") and path.is_file() else None)
        return {"plugin": plugin, "source": source, "sha256": self._file_hashes[source]}


_DEFAULT: list[Catalog] = []


def default_catalog() -> Catalog:
    """The catalog of the installed entry-point plugins, built once per process.

    For plugins that refer to other registered names at run time (a task wrapping a task).
    """
    if not _DEFAULT:
        from iclbench.plugins import make_plugin_manager

        _DEFAULT.append(build_catalog(make_plugin_manager()))
    return _DEFAULT[0]


def catalog_from_files(plugin_files: tuple[str, ...] = ()) -> Catalog:
    """The entry-point plugins plus single-file plugins: what a worker process rebuilds."""
    from iclbench.plugins import make_plugin_manager

    return build_catalog(make_plugin_manager(files=plugin_files))


def _reproduction(cls: object, plugin: str) -> "type[Reproduction]":
    """A class with a string `name`, a `spec()` and `findings()`: the shape of a Reproduction."""
    if not (isinstance(cls, type) and isinstance(getattr(cls, "name", None), str)
            and callable(getattr(cls, "spec", None)) and callable(getattr(cls, "findings", None))):
        raise TypeError(f"plugin {plugin!r} registered {cls!r}, which is not a named iclbench.reproduce.Reproduction")
    return cls


def build_catalog(pm: PluginManager, strict: bool = True) -> Catalog:
    """Call the registration hooks of every plugin in `pm`; `strict=False` keeps clashes aside."""
    cat = Catalog(Registry("learner", strict), Registry("task", strict), SuiteRegistry(strict),
                  Registry("analysis", strict), Registry("reproduction", strict), pm)

    def adder(registry: Registry, check):
        def add(obj: object, plugin: str) -> None:
            cls = check(obj, plugin)
            registry.add(cls.name, cls, plugin)
        return add

    call_register_hook(pm, "register_learners", adder(cat.learners, lambda c, p: checked_class("learner", Learner, c, p)))
    call_register_hook(pm, "register_tasks", adder(cat.tasks, lambda c, p: checked_class("task", Task, c, p)))
    call_register_hook(pm, "register_suites", cat.suites.add_path)
    call_register_hook(pm, "register_analyses", adder(cat.analyses, lambda c, p: checked_class("analysis", Analysis, c, p)))
    call_register_hook(pm, "register_reproductions", adder(cat.reproductions, _reproduction))
    return cat
