"""The catalog: every learner, task, suite, analysis, reproduction, tracker and executor the loaded plugins registered.

It sits above the kinds it collects (registry, suites, analyses, reproductions), so none of
them needs to know the others. A strict catalog refuses a name registered twice; a lenient
one (for `iclbench list` and `plugins`) keeps the first and lists the clash.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iclbench.analysis import Analysis
from iclbench.codehash import class_digest, pin, plugin_file_digest
from iclbench.executors import Executor, checked_executor
from iclbench.learner import Learner
from iclbench.plugins import PluginManager, call_register_hook
from iclbench.registry import DuplicateNameError, RegistrationError, Registry, checked_class
from iclbench.suite import SuiteRegistry
from iclbench.task import Task
from iclbench.tracking import Tracker, checked_tracker

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
    trackers: Registry[type[Tracker]] = field(default_factory=lambda: Registry("tracker"))
    executors: Registry[type[Executor]] = field(default_factory=lambda: Registry("executor"))
    _file_hashes: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def clashes(self) -> list[DuplicateNameError]:
        """Names registered twice (only a lenient catalog holds any)."""
        regs = (self.learners, self.tasks, self.suites.names, self.analyses, self.reproductions, self.trackers,
                self.executors)
        return [c for r in regs for c in r.clashes]

    def provenance(self, kind: str, name: str) -> dict[str, Any]:
        """Where the code of learner or task `name` comes from: its plugin, the plugin's
        distribution and version (or file), for a single-file plugin the file's hash, and the
        digest of the code behind it (`iclbench.codehash`), so a record made by other code is
        never taken for this one's."""
        registry = {"learner": self.learners, "task": self.tasks}[kind]
        plugin = registry.owner(name)
        source = self.plugins.sources.get(plugin, "?")
        if source not in self._file_hashes:  # once per process: the code this process loaded
            path = Path(source)
            self._file_hashes[source] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                         if source.endswith(".py") and path.is_file() else None)
        return {"plugin": plugin, "source": source, "sha256": self._file_hashes[source],
                "code": class_digest(registry[name])}


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


@dataclass(frozen=True)
class PluginSource:
    """A `--plugin` file's absolute path, bytes and code digest (it with its local imports), so
    a worker on another machine loads the same code and keys its numbers as the driver does."""

    path: str
    content: bytes
    code: str | None = None

    @classmethod
    def read(cls, path: str | Path) -> "PluginSource":
        path = Path(path).resolve()
        return cls(str(path), path.read_bytes(), plugin_file_digest(path))


def catalog_from_sources(sources: tuple[PluginSource, ...] = ()) -> Catalog:
    """`catalog_from_files` for plugin files shipped as bytes: each is written under its own
    name to a temporary folder and loaded from there (the same module name as on the driver),
    while provenance still names the original file and its hash, so records match the driver's."""
    from iclbench.plugins import make_plugin_manager

    folder = Path(tempfile.mkdtemp(prefix="iclbench-plugins-"))
    files = []
    for i, source in enumerate(sources):
        path = folder / str(i) / Path(source.path).name
        path.parent.mkdir()
        path.write_bytes(source.content)
        if source.code is not None:
            pin(path, source.code)
        files.append(str(path))
    cat = build_catalog(make_plugin_manager(files=tuple(files)))
    for source in sources:
        cat.plugins.sources[Path(source.path).stem] = source.path
        cat._file_hashes[source.path] = hashlib.sha256(source.content).hexdigest()
    return cat


def _reproduction(cls: object, plugin: str) -> "type[Reproduction]":
    """A class with a string `name`, a `spec()` and `findings()`: the shape of a Reproduction."""
    if not (isinstance(cls, type) and isinstance(getattr(cls, "name", None), str)
            and callable(getattr(cls, "spec", None)) and callable(getattr(cls, "findings", None))):
        raise RegistrationError(f"plugin {plugin!r} registered {cls!r}, which is not a named iclbench.reproduce.Reproduction")
    return cls


def build_catalog(pm: PluginManager, strict: bool = True) -> Catalog:
    """Call the registration hooks of every plugin in `pm`; `strict=False` keeps clashes aside."""
    cat = Catalog(Registry("learner", strict), Registry("task", strict), SuiteRegistry(strict),
                  Registry("analysis", strict), Registry("reproduction", strict), pm,
                  trackers=Registry("tracker", strict), executors=Registry("executor", strict))

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
    call_register_hook(pm, "register_trackers", adder(cat.trackers, checked_tracker))
    call_register_hook(pm, "register_executors", adder(cat.executors, checked_executor))
    return cat
