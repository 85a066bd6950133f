"""Every hook iclbench calls. Plugins implement them with `@iclbench.hookimpl`.

Each hook receives a `register` callback, so built-in and third-party plugins add
learners, task families, suites, analyses, reproductions, trackers and executors in exactly
the same way. This module is the reference for what each hook accepts; README.md's "Writing
a plugin" section shows a whole plugin.

What every hook has in common:

- They are all called at catalog build, by `iclbench.catalog.build_catalog`, through
  `iclbench.plugins.call_register_hook`: once per plugin that implements the hook, in plugin
  registration order (the entry-point plugins sorted by entry-point name, then the `--plugin`
  files in the order given). The hooks themselves run in this order: `register_learners`,
  `register_tasks`, `register_suites`, `register_analyses`, `register_reproductions`,
  `register_trackers`, `register_executors`, each one over every plugin before the next
  begins.
- An implementation takes one argument, named `register` (pluggy refuses any other name
  with a PluginValidationError when the plugin is added), and calls `register(obj)` once per
  object, from within the hook. The callback knows which plugin is calling, so a duplicate
  name error names both plugins.
- Names are unique per kind (a learner and a task may share one). In a strict catalog (the
  default) a second registration of a name raises `iclbench.registry.DuplicateNameError`; a
  lenient one (`build_catalog(pm, strict=False)`, for `iclbench list` and `iclbench plugins`)
  keeps the first and lists the clash in `Catalog.clashes`. A wrong object raises in either.
  The first error ends the build: later registrations and hooks do not run.
- None returns anything: a return value is ignored, and no hook is `firstresult`.
- The implementations are called in the order `get_hookimpls()` lists them, not pluggy's
  usual last-registered-first order: `trylast=True` runs an implementation before the
  others and `tryfirst=True` after them. Wrappers (`wrapper=True`, `hookwrapper=True`) are
  never run, so they register nothing.
- `ICLBENCH_TRACE_PLUGINS=1` prints every call (hook and plugin) to stderr.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("iclbench")
hookimpl = pluggy.HookimplMarker("iclbench")


@hookspec
def register_learners(register: Callable[[type], None]) -> None:
    """Register learners: call `register(LearnerClass)` once per `iclbench.Learner` subclass.

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a class, not an instance: a subclass of `iclbench.Learner` with a
            non-empty string `name` (the registry key and the name used on the command line)
            and a `Config` subclassing `iclbench.config.StrictConfig` (the inherited
            `iclbench.LearnerConfig` does), as `iclbench.registry.checked_class` checks.

    Raises:
        iclbench.registry.RegistrationError: the object is not such a class (a UsageError
            naming the plugin, and a TypeError).
        iclbench.registry.DuplicateNameError: another learner, of this plugin or another, has
            the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: first, before `register_tasks`.

    Example:

        import torch
        import iclbench

        class Zero(iclbench.Learner):
            name = "my-zero"

            def predict(self, episode):
                return torch.zeros_like(episode.query_y)

        @iclbench.hookimpl
        def register_learners(register):
            register(Zero)
    """


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register task families: call `register(TaskClass)` once per `iclbench.Task` subclass.

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a class, not an instance: a subclass of `iclbench.Task` with a
            non-empty string `name` (what suites and `--task` refer to) and a `Config`
            subclassing `iclbench.config.StrictConfig` (the inherited `iclbench.TaskConfig`
            does), as `iclbench.registry.checked_class` checks.

    Raises:
        iclbench.registry.RegistrationError: the object is not such a class (a UsageError
            naming the plugin, and a TypeError).
        iclbench.registry.DuplicateNameError: another task, of this plugin or another, has
            the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: after `register_learners`, before `register_suites`.

    Example:

        import torch
        import iclbench

        class Slope(iclbench.Task):
            name = "my-slope"  # y = a x, a ~ N(0, 1) per task, 10 context pairs

            def sample(self, n, *, generator, device):
                a = torch.randn(n, 1, 1, generator=generator, device=device)
                x = torch.randn(n, 11, 1, generator=generator, device=device)
                y = a * x
                return iclbench.Episode(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1])

        @iclbench.hookimpl
        def register_tasks(register):
            register(Slope)
    """


@hookspec
def register_suites(register: Callable[[object], None]) -> None:
    """Register suites: call `register(path)` with a suite `.toml` file or a folder of them.

    `path` may be a `pathlib.Path` or an `importlib.resources` Traversable, so suites
    shipped inside an installed package work.

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a `str`, a `pathlib.Path` or a Traversable
            (`iclbench.suite.SuiteRegistry.add_path`). A folder registers every file directly
            in it whose name ends in `.toml`, in file-name order (subfolders are not searched);
            any other path is read as one suite file. Each file is read and checked against
            the suite schema now, and registered under the `name` written in it (not its file
            name); its task names and `include` are resolved only when the suite is loaded.
            Nothing checks the type: another object fails on the first method it lacks.

    Raises:
        iclbench.suite.SuiteError: a file is not valid TOML or not a valid suite (a
            UsageError naming the file and the field).
        FileNotFoundError: the path does not exist.
        iclbench.registry.DuplicateNameError: another suite, of this plugin or another, has
            the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: after `register_tasks`, before `register_analyses`.

    Example:

        from importlib.resources import files
        import iclbench

        @iclbench.hookimpl
        def register_suites(register):
            register(files("my_package") / "suites")  # each my_package/suites/*.toml
    """


@hookspec
def register_analyses(register: Callable[[type], None]) -> None:
    """Register analyses: call `register(AnalysisClass)` once per `iclbench.analysis.Analysis` subclass.

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a class, not an instance: a subclass of `iclbench.analysis.Analysis`
            with a non-empty string `name` (for `iclbench analyze NAME`) and a `Config`
            subclassing `iclbench.config.StrictConfig` (the inherited
            `iclbench.analysis.AnalysisConfig` does), as `iclbench.registry.checked_class`
            checks.

    Raises:
        iclbench.registry.RegistrationError: the object is not such a class (a UsageError
            naming the plugin, and a TypeError).
        iclbench.registry.DuplicateNameError: another analysis, of this plugin or another,
            has the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: after `register_suites`, before `register_reproductions`.

    Example:

        import iclbench
        from iclbench.plugin_api import Analysis

        class QueryNorm(Analysis):
            name = "my-query-norm"

            def run(self, ctx):
                return {"mean_norm": ctx.episode().query_x.norm(dim=-1).mean().item()}

        @iclbench.hookimpl
        def register_analyses(register):
            register(QueryNorm)
    """


@hookspec
def register_reproductions(register: Callable[[type], None]) -> None:
    """Register paper reproductions: call `register(ReproductionClass)` (see `iclbench.reproduce`).

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a class, not an instance, checked by shape only: a class with a
            string `name` (for `iclbench reproduce NAME`) and callable `spec` and `findings`
            attributes. Subclass `iclbench.reproduce.Reproduction` and set `name` and
            `spec_file` (a Path or Traversable of the TOML spec); `spec_file` is not read
            until the reproduction runs.

    Raises:
        iclbench.registry.RegistrationError: the object is not such a class (a UsageError
            naming the plugin, and a TypeError).
        iclbench.registry.DuplicateNameError: another reproduction, of this plugin or
            another, has the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: after `register_analyses`, before `register_trackers`.

    Example:

        from importlib.resources import files
        import iclbench
        from iclbench.plugin_api import Reproduction

        class MyPaper(Reproduction):
            name = "my-paper"
            spec_file = files("my_package") / "my-paper.toml"

            def findings(self, results):
                return []  # one iclbench.reproduce.Finding per claim checked on `results`

        @iclbench.hookimpl
        def register_reproductions(register):
            register(MyPaper)
    """


@hookspec
def register_executors(register: Callable[[type], None]) -> None:
    """Register execution backends: call `register(ExecutorClass)`; chosen with `--executor NAME`.

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a class, not an instance: a subclass of
            `iclbench.executors.Executor` with a non-empty string `name`, as
            `iclbench.executors.checked_executor` checks. It is built with the command's
            `ExecutorOptions` only when chosen.

    Raises:
        iclbench.registry.RegistrationError: the object is not such a class (a UsageError
            naming the plugin, and a TypeError).
        iclbench.registry.DuplicateNameError: another executor, of this plugin or another,
            has the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: last, after `register_trackers`.

    Example:

        import iclbench
        from iclbench.plugin_api import Evaluation, Executor, Outcome, cache_dir

        class Serial(Executor):
            name = "my-serial"  # every plan in this process, in order

            def evaluate(self, catalog, plans, store, cache, progress=None, announce=None):
                outcome = Outcome()
                with cache_dir(cache):
                    for i, plan in enumerate(plans):
                        if announce:
                            announce(i)
                        evaluation = Evaluation(catalog, plan, store, progress=progress)
                        outcome.records += evaluation.run()
                        outcome.failures += evaluation.failures
                return outcome

        @iclbench.hookimpl
        def register_executors(register):
            register(Serial)
    """


@hookspec
def register_trackers(register: Callable[[type], None]) -> None:
    """Register experiment trackers: call `register(TrackerClass)`; chosen with `--track NAME`.

    Called: at catalog build (`iclbench.catalog.build_catalog`), once per plugin, in plugin
    registration order.

    Args:
        register: takes a class, not an instance: a subclass of `iclbench.tracking.Tracker`
            with a non-empty string `name`, as `iclbench.tracking.checked_tracker` checks.
            Its `requires` modules are checked only when it is chosen.

    Raises:
        iclbench.registry.RegistrationError: the object is not such a class (a UsageError
            naming the plugin, and a TypeError).
        iclbench.registry.DuplicateNameError: another tracker, of this plugin or another,
            has the same `name` (strict catalog only; the message names both plugins).

    Returns:
        Nothing; a return value is ignored (not firstresult: every plugin's hook is called).

    Order: after `register_reproductions`, before `register_executors`.

    Example:

        import iclbench
        from iclbench.plugin_api import Tracker

        class Printer(Tracker):
            name = "my-print"

            def start(self, run_name, config, first_step=0):
                self.run_name = run_name

            def log(self, step, values):
                print(f"[{self.run_name}] step {step}: {values}")

        @iclbench.hookimpl
        def register_trackers(register):
            register(Printer)
    """
