"""The plugin manager: entry-point plugins, single-file plugins, and hook tracing.

Environment:
  ICLBENCH_LOAD_PLUGINS   comma-separated entry-point names to load (empty: none); unset: all.
  ICLBENCH_TRACE_PLUGINS  if set, print every registration hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterable

import pluggy

from iclbench import hookspecs
from iclbench.errors import UsageError

ENTRY_POINT_GROUP = "iclbench"


class PluginFileError(UsageError):
    """A `--plugin` file is missing, does not parse, raises on import, or takes a plugin name
    already loaded: a usage error."""


class PluginFileNotFoundError(PluginFileError, FileNotFoundError):
    """A `--plugin` file that does not exist; still a FileNotFoundError for older callers."""


@dataclass
class PluginInfo:
    """What `iclbench plugins` shows for one loaded plugin."""

    name: str
    source: str  # distribution name and version, or the file it was loaded from
    hooks: list[str] = field(default_factory=list)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with iclbench's hook specs and a record of where plugins came from."""

    def __init__(self) -> None:
        super().__init__("iclbench")
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, str] = {}

    def add(self, plugin: object, name: str, source: str) -> None:
        """Register `plugin` under `name`; misspelt hook implementations are rejected."""
        self.register(plugin, name=name)
        self.sources[name] = source
        self.check_pending()
        if not self.get_hookcallers(plugin):
            warnings.warn(self._no_hooks_message(plugin, name), stacklevel=2)

    def _no_hooks_message(self, plugin: object, name: str) -> str:
        """Why a plugin contributes nothing: usually hook functions without the marker."""
        msg = f"plugin {name!r} implements no iclbench hook; it likely lacks @iclbench.hookimpl"
        undecorated = sorted(h for h in vars(self.hook) if callable(getattr(plugin, h, None)))
        return msg + (f" (undecorated: {', '.join(undecorated)})" if undecorated else "")

    def info(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self.list_name_plugin():
            hooks = sorted(c.name for c in self.get_hookcallers(plugin) or [])
            out.append(PluginInfo(name, self.sources.get(name, "?"), hooks))
        return sorted(out, key=lambda p: p.name)


def load_entry_points(pm: PluginManager) -> None:
    """Load every plugin in the `iclbench` entry-point group; a broken one is warned about and skipped."""
    wanted = os.environ.get("ICLBENCH_LOAD_PLUGINS")
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            dist = ep.dist
            source = f"{dist.name} {dist.version}" if dist else ep.value
            pm.add(plugin, ep.name, source)
        except Exception as err:  # a broken plugin must not take the others down
            warnings.warn(f"skipping plugin {ep.name!r} ({ep.value}): {type(err).__name__}: {err}", stacklevel=2)


def load_plugin_file(pm: PluginManager, path: str | Path) -> ModuleType:
    """Import a single `.py` file as a plugin (the `--plugin` option).

    A missing file, a syntax error or an exception at import raises PluginFileError naming the
    file, so the command line can report it as a usage error rather than a traceback.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise PluginFileNotFoundError(f"plugin file not found: {path}")
    if pm.has_plugin(path.stem):
        raise PluginFileError(f"plugin file {path}: a plugin named {path.stem!r} is already loaded from "
                              f"{pm.sources.get(path.stem, '?')}; rename the file")
    mod_name = f"iclbench_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(mod_name, None)
        raise PluginFileError(_import_failure(path, err)) from err
    pm.add(module, path.stem, str(path))
    return module


def _import_failure(path: Path, err: Exception) -> str:
    """One line naming the plugin file, the error and, where known, the line in that file."""
    if isinstance(err, SyntaxError):
        elsewhere = "" if err.filename and Path(err.filename) == path else f" in {err.filename}"
        return f"plugin file {path}: SyntaxError{elsewhere} at line {err.lineno}: {err.msg}"
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    where = f" at line {lines[-1]}" if lines else ""
    return f"plugin file {path}: {type(err).__name__}{where} on import: {err}"


def unique_files(files: Iterable[str | Path]) -> tuple[str, ...]:
    """`files` without repeats of one file (the same resolved path), first spelling kept: the
    same `--plugin` given twice is loaded once."""
    seen: dict[Path, str] = {}
    for f in files:
        seen.setdefault(Path(f).resolve(), str(f))
    return tuple(seen.values())


CORE_PLUGINS = {"local-executor": "iclbench.local_executor"}  # the core's own implementations of its hooks


def make_plugin_manager(*, entry_points: bool = True, files: Iterable[str | Path] = (),
                        core: bool = True) -> PluginManager:
    """A fresh manager holding the core's own plugins (`CORE_PLUGINS`, unless `core` is False),
    then the entry-point plugins and `files`; tests build their own and register small plugin
    classes in it. A file given twice is loaded once; two files with one name (stem) are a
    PluginFileError."""
    pm = PluginManager()
    if core:
        from iclbench import __version__

        for name, module in CORE_PLUGINS.items():
            pm.add(importlib.import_module(module), name, f"iclbench {__version__}")
    if entry_points:
        load_entry_points(pm)
    for f in unique_files(files):
        load_plugin_file(pm, f)
    return pm


def is_wrapper(impl) -> bool:
    """A pluggy wrapper implementation (`wrapper=True` or the older `hookwrapper=True`)."""
    return bool(impl.hookwrapper or getattr(impl, "wrapper", False))


def call_register_hook(pm: PluginManager, hook: str, register) -> None:
    """Call `hook` on each plugin with a `register` bound to that plugin's name: those marked
    `tryfirst` first, then the rest in registration order, then those marked `trylast`. A
    wrapper implementation cannot register anything: it is warned about and skipped.

    Knowing which plugin registered what lets duplicate names be reported with both owners.
    """
    trace = os.environ.get("ICLBENCH_TRACE_PLUGINS")
    impls = getattr(pm.hook, hook).get_hookimpls()  # trylast ones first, tryfirst ones last (pluggy's order)
    for impl in filter(is_wrapper, impls):
        warnings.warn(f"plugin {impl.plugin_name!r}: a wrapper implementation of {hook} registers nothing; "
                      "drop wrapper=True / hookwrapper=True", stacklevel=2)
    ordered = sorted((i for i in impls if not is_wrapper(i)), key=lambda i: 0 if i.tryfirst else 2 if i.trylast else 1)
    for impl in ordered:
        if trace:
            print(f"[iclbench] {hook} -> {impl.plugin_name}", file=sys.stderr)
        impl.function(register=lambda obj, _p=impl.plugin_name: register(obj, _p))
