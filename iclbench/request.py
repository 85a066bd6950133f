"""One evaluation request, from the command line or the Python API, checked once.

`EvaluationRequest` holds what was asked for, as the caller gave it; `resolve()` checks every
field and builds what the run needs (`Resolved`). Errors name a field as the caller spells it:
`n_tasks` for the API, `--n-tasks` for the CLI (`option`). Nothing is fitted before every check
has passed, so a usage error never costs a training.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from iclbench.catalog import Catalog, build_catalog
from iclbench.config import build_config, merge, parse_assignments, parse_spec, split_top_level
from iclbench.errors import UsageError
from iclbench.executors import Executor, ExecutorOptions, select_executor
from iclbench.locks import unique_tmp
from iclbench.plugins import PluginFileError, make_plugin_manager, unique_files
from iclbench.session import SESSION_PLUGIN, SessionPlugin, split_learners
from iclbench.registry import UnknownNameError
from iclbench.runner import LearnerSpec, Plan
from iclbench.seeding import resolve_device
from iclbench.store import ResultStore
from iclbench.suite import Suite
from iclbench.tracking import Tracking, TrackerError, select
from iclbench.workload import check_plan

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_CACHE = "default"  # the checkpoint folder OUT/checkpoints, as the CLI's
CLI_OPTIONS = {"plugins": "--plugin", "learner_config": "--learner-config"}  # the rest: --field-name


def api_option(field_name: str) -> str:
    """How the Python API names a field in errors: its keyword."""
    return field_name


def cli_option(field_name: str) -> str:
    """How the command line names a field in errors: its option."""
    return CLI_OPTIONS.get(field_name, "--" + field_name.replace("_", "-"))


def catalog(plugins: Iterable[str | Path] = (), strict: bool = True, option: str = "plugin file",
            session: Sequence[type] = ()) -> Catalog:
    """The installed plugins plus single-file `plugins` (each file once) and the `session`
    learner classes (one plugin, `session`); `strict=False` lists name clashes instead of
    failing. A plugin file that does not load, or a plugin that registers something unusable,
    is a UsageError naming it (`option`: how errors name the files)."""
    try:
        pm = make_plugin_manager(files=unique_files(plugins))
    except PluginFileError as err:
        raise UsageError(f"{option}: {err}") from None
    if session:
        pm.add(SessionPlugin(session), SESSION_PLUGIN, "defined in this session")
    return build_catalog(pm, strict=strict)  # a wrong registration is a RegistrationError, a UsageError


def integer(value: Any, what: str) -> int:
    """`value` as an int, or a UsageError naming `what`: bools, floats and strings are refused
    (`seeds=[0.7]` would otherwise run seed 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{what} must be an integer, got {value!r}")
    return int(value)


def at_least(value: Any, what: str, least: int) -> int:
    """`value` as an int of at least `least`, or a UsageError naming `what`."""
    value = integer(value, what)
    if value < least:
        raise UsageError(f"{what} must be at least {least}, got {value}")
    return value


def seed_list(seeds: Any, what: str = "seeds") -> list[int]:
    """`seeds` (a sequence of integers) as a list, each checked with `integer`."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise UsageError(f"{what} must be a list of integers, got {seeds!r}")
    seeds = list(seeds)
    out = [integer(s, f"{what} {seeds!r}: each seed") for s in seeds]
    if not out:
        raise UsageError(f"{what}: no seed given")
    return out


def seconds_limit(value: Any, what: str) -> float | None:
    """A positive, finite number of seconds (or None: no limit)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 < value < float("inf")):
        shown = f"{value:g}" if isinstance(value, float) else repr(value)
        raise UsageError(f"{what} must be a positive number of seconds, got {shown}")
    return value


def writable_folder(path: str | Path, what: str = "out") -> Path:
    """`path` as a folder this process can write into, created if missing (checked before any
    fitting, so an unusable folder never costs a training)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = unique_tmp(path / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"{what} {str(path)!r} is not a writable folder: {err.strerror or err}") from None
    return path


def device(name: str | torch.device = "auto") -> torch.device:
    """`auto`, `cpu`, `cuda[:N]` or `mps` as a torch device, or a UsageError saying why not."""
    try:
        return resolve_device(str(name))
    except ValueError as err:
        raise UsageError(str(err)) from None


def trackers(names: str | Sequence[str] | None, folder: Path, cat: Catalog, option=api_option) -> Tracking | None:
    """The trackers `names` names, writing into `folder`; an unknown tracker, a missing package
    or an unwritable folder is a UsageError naming the option."""
    try:
        selection = select(names, folder, cat.trackers)
    except (UnknownNameError, TrackerError) as err:
        raise UsageError(f"{option('track')}: {err}") from None
    if selection is not None:
        writable_folder(selection.folder, option("track_dir"))
    return selection


def suite_of(cat: Catalog, suite: str | Suite | None = None, task: str | None = None,
             task_config: str | dict[str, Any] | None = None, option=api_option) -> Suite:
    """A registered suite or suite file (or a Suite already built), or one task family (`task`,
    with `task_config`) as a suite."""
    if isinstance(suite, Suite) and not task and not task_config:
        return suite
    if task and suite:
        raise UsageError(f"give either {option('suite')} or {option('task')}, not both")
    if task:
        overrides = parse_assignments(task_config) if isinstance(task_config, str) else dict(task_config or {})
        return Suite.single(cat.tasks[task](overrides))
    if task_config:
        raise UsageError(f"{option('task_config')} needs {option('task')}")
    return cat.suites.load(suite or "linear", cat)


def check_session(session: Sequence[type], cat: Catalog, executor: str, options: ExecutorOptions,
                  option=api_option) -> None:
    """Session learners live in this process only: other executors, training workers and a
    catalog loaded without them cannot run them."""
    if not session:
        return
    names = ", ".join(c.__qualname__ for c in session)
    if executor != "local" or options.jobs > 1 or options.stack_seeds:
        raise UsageError(f"{option('learners')}: learners defined in this session ({names}) run in this process only; "
                         f"use {option('executor')}='local' with one job and no stacked seeds, or put them "
                         "in a plugin file (plugins=[...])")
    missing = [c.__qualname__ for c in session if c.name not in cat.learners or cat.learners[c.name] is not c]
    if missing:
        raise UsageError(f"{option('learners')}: {', '.join(missing)} not in the catalog given; "
                         "leave catalog unset to register session learners")


def learner_specs(learners: str | Sequence[str], defaults: dict[str, dict[str, Any]], cat: Catalog,
                  option=api_option) -> list[LearnerSpec]:
    """Learner specs (`gd`, `gd[steps=2]`, ...; a list or one comma-separated string) with
    `defaults` (name -> options) under each spec's own options; duplicates by label dropped.
    Each spec's learner is built here, once, as its prototype (label, config checks, workload)."""
    items = split_top_level(learners) if isinstance(learners, str) else list(learners)
    specs, labels = [], set()
    for item in items:
        name, overrides = parse_spec(item)
        cat.learners[name]  # unknown names fail here, with a suggestion
        spec = LearnerSpec(name, merge(defaults.get(name, {}), overrides))
        label = spec.prototype(cat).label
        if label not in labels:
            labels.add(label)
            specs.append(spec)
    named = {s.name for s in specs}
    for name, values in defaults.items():  # options for learners not in the run: still checked
        if name not in named:
            build_config(cat.learners[name].Config, values, owner=f"learner {name!r}")
    if not specs:
        raise UsageError(f"{option('learners')}: no learner named")
    return specs


def reference_spec(align_to: str | None, defaults: dict[str, dict[str, Any]], cat: Catalog) -> LearnerSpec | None:
    """The `align_to` learner's spec (with its `defaults`), its prototype built; None for none."""
    if not align_to:
        return None
    name, overrides = parse_spec(align_to)
    spec = LearnerSpec(name, merge(defaults.get(name, {}), overrides))
    spec.prototype(cat)
    return spec


@dataclass(frozen=True)
class Resolved:
    """What an evaluation run needs, every part checked."""

    catalog: Catalog
    plan: Plan
    executor: Executor
    store: ResultStore
    cache: Path | None  # the checkpoint folder; None: no cache
    trackers: Tracking | None


@dataclass(frozen=True)
class EvaluationRequest:
    """`iclbench evaluate`'s options, or `iclbench.evaluate`'s arguments, as given."""

    learners: str | Sequence[Any]  # spec strings; from Python also Learner subclasses and instances
    suite: str | Suite | None = None
    seeds: Sequence[int] = (0,)
    task: str | None = None
    task_config: str | dict[str, Any] | None = None
    learner_config: dict[str, dict[str, Any]] | None = None
    n_tasks: int = 10000
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 20000
    align_to: str | None = None
    out: str | Path = "results"
    cache: str | Path | None = DEFAULT_CACHE  # DEFAULT_CACHE: OUT/checkpoints; None: no cache
    force: bool = False
    plugins: Sequence[str | Path] = ()
    executor: str = "local"
    executor_options: ExecutorOptions | None = None
    track: str | Sequence[str] | None = None
    track_dir: str | Path | None = None  # None: OUT/tracking
    allow_large: bool = False
    learner_timeout: float | None = None  # seconds a learner's fit, or its scoring on one column, may take
    log_samples: bool = False  # each record's per-task predictions, targets and losses (`iclbench.samples`)
    catalog: Catalog | None = field(default=None, compare=False)  # already loaded (else built from `plugins`)
    option: Callable[[str], str] = api_option  # how errors name a field

    def resolve(self) -> Resolved:
        """Every field checked, in the order a reader fixes them, and the run's parts built."""
        o = self.option
        seeds = seed_list(self.seeds, o("seeds"))
        n_tasks = at_least(self.n_tasks, o("n_tasks"), 2)
        batch_size = at_least(self.batch_size, o("batch_size"), 1)
        if self.dtype not in DTYPES:
            raise UsageError(f"{o('dtype')} must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        timeout = seconds_limit(self.learner_timeout, o("learner_timeout"))
        plugins = unique_files(self.plugins)
        names, session = split_learners(self.learners, o("learners"))
        cat = self.catalog or catalog(plugins, option=o("plugins"), session=session)
        options = self.executor_options or ExecutorOptions(plugin_files=plugins)
        check_session(session, cat, self.executor, options, o)
        backend = select_executor(cat, self.executor, options)
        defaults = dict(self.learner_config or {})
        plan = Plan(learners=learner_specs(names, defaults, cat, o),
                    suite=suite_of(cat, self.suite, self.task, self.task_config, o), seeds=seeds, n_tasks=n_tasks,
                    device=device(self.device), dtype=DTYPES[self.dtype], batch_size=batch_size,
                    align_to=reference_spec(self.align_to, defaults, cat), force=self.force, learner_timeout=timeout,
                    log_samples=bool(self.log_samples))
        check_plan(plan, cat, allow_large=self.allow_large)
        mirrors = trackers(self.track, Path(self.track_dir or Path(self.out) / "tracking"), cat, o)
        store = ResultStore(writable_folder(self.out, o("out")))
        cache = Path(self.out) / "checkpoints" if self.cache == DEFAULT_CACHE else (
            None if self.cache is None else Path(self.cache))
        return Resolved(cat, plan, backend, store, cache, mirrors)
