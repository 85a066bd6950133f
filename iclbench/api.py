"""The Python API: the same plugins, checkpoint cache and records as the command line, for
notebooks and scripts.

    import iclbench
    df = iclbench.evaluate(["gd", "lsa"], suite="linear", seeds=[0, 1, 2])
    board = iclbench.leaderboard("results")

`evaluate` appends to `OUT/results.jsonl` exactly as `iclbench evaluate --out OUT` does (and
reuses its stored records and checkpoints), so a notebook and the CLI can share one results
folder. Errors in what is asked for raise `UsageError` (a ValueError) before anything is fitted:
every usage error (an unknown name, an invalid config, a bad plugin, a refused workload, ...)
is a subclass of it.
"""

from __future__ import annotations

import numbers
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch

from iclbench.catalog import Catalog, build_catalog
from iclbench.executors import ExecutorOptions, select_executor
from iclbench.config import build_config, merge, parse_assignments, parse_spec, split_top_level
from iclbench.errors import UsageError
from iclbench.locks import unique_tmp
from iclbench.plugins import PluginFileError, make_plugin_manager, unique_files
from iclbench.runner import LearnerSpec, Plan
from iclbench.seeding import resolve_device
from iclbench.store import ResultStore, read_all
from iclbench.suite import Suite
from iclbench.tracking import TrackerError, select, tracking
from iclbench.workload import check_plan

if TYPE_CHECKING:  # pandas loads when a frame is made, so the CLI's light commands stay light
    import pandas as pd

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_CACHE = "default"  # evaluate's cache: OUT/checkpoints, as the CLI's


def usage_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the request was unusable (the CLI's exit 2): UsageError, whose
    subclasses are every usage error iclbench raises (a suite file's SuiteError included)."""
    return (UsageError,)


def catalog(plugins: Iterable[str | Path] = (), strict: bool = True, option: str = "plugin file") -> Catalog:
    """The installed plugins plus single-file `plugins` (each file once); `strict=False` lists
    name clashes instead of failing. A plugin file that does not load, or a plugin that
    registers something unusable, is a UsageError naming it (`option`: how errors name the files)."""
    try:
        pm = make_plugin_manager(files=unique_files(plugins))
    except PluginFileError as err:
        raise UsageError(f"{option}: {err}") from None
    return build_catalog(pm, strict=strict)  # a wrong registration is a RegistrationError, a UsageError


def integer(value: Any, what: str) -> int:
    """`value` as an int, or a UsageError naming `what`: bools, floats and strings are refused
    (`seeds=[0.7]` would otherwise run seed 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{what} must be an integer, got {value!r}")
    return int(value)


def seed_list(seeds: Any) -> list[int]:
    """`seeds` (a sequence of integers) as a list, each checked with `integer`."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise UsageError(f"seeds must be a list of integers, got {seeds!r}")
    seeds = list(seeds)
    out = [integer(s, f"seeds {seeds!r}: each seed") for s in seeds]
    if not out:
        raise UsageError("seeds: no seed given")
    return out


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
    """`auto`, `cpu` or `cuda[:N]` as a torch device, or a UsageError saying why not."""
    try:
        return resolve_device(str(name))
    except ValueError as err:
        raise UsageError(str(err)) from None


def learner_specs(learners: str | Sequence[str], defaults: dict[str, dict[str, Any]], cat: Catalog) -> list[LearnerSpec]:
    """Learner specs (`gd`, `gd[steps=2]`, ...; a list or one comma-separated string) with
    `defaults` (name -> options) under each spec's own options; duplicates by label dropped."""
    items = split_top_level(learners) if isinstance(learners, str) else list(learners)
    specs, labels = [], set()
    for item in items:
        name, overrides = parse_spec(item)
        cat.learners[name]  # unknown names fail here, with a suggestion
        spec = LearnerSpec(name, merge(defaults.get(name, {}), overrides))
        label = spec.build(cat).label
        if label not in labels:
            labels.add(label)
            specs.append(spec)
    named = {s.name for s in specs}
    for name, values in defaults.items():  # options for learners not in the run: still checked
        cls = cat.learners[name]
        if name not in named:
            build_config(cls.Config, values, owner=f"learner {name!r}")
    if not specs:
        raise UsageError("learners: no learner named")
    return specs


def suite_of(cat: Catalog, suite: str | Suite | None = None, task: str | None = None,
             task_config: str | dict[str, Any] | None = None) -> Suite:
    """A registered suite or suite file (or a Suite already built), or one task family (`task`,
    with `task_config`) as a suite."""
    if isinstance(suite, Suite) and not task and not task_config:
        return suite
    if task and suite:
        raise UsageError("give either a suite or a task, not both")
    if task:
        overrides = parse_assignments(task_config) if isinstance(task_config, str) else dict(task_config or {})
        return Suite.single(cat.tasks[task](overrides))
    if task_config:
        raise UsageError("a task config needs a task")
    return cat.suites.load(suite or "linear", cat)


def reference_spec(align_to: str | None, defaults: dict[str, dict[str, Any]], cat: Catalog) -> LearnerSpec | None:
    if not align_to:
        return None
    name, overrides = parse_spec(align_to)
    cat.learners[name]
    return LearnerSpec(name, merge(defaults.get(name, {}), overrides))


def run_evaluation(learners: str | Sequence[str], suite: str | Suite | None = None, seeds: Sequence[int] = (0,), *,
                   task: str | None = None, task_config: str | dict[str, Any] | None = None,
                   learner_config: dict[str, dict[str, Any]] | None = None, n_tasks: int = 10000,
                   device_name: str = "auto", dtype: str = "float32", batch_size: int = 20000,
                   align_to: str | None = None, out: str | Path = "results", cache: str | Path | None = DEFAULT_CACHE,
                   force: bool = False, plugins: Iterable[str | Path] = (), cat: Catalog | None = None,
                   executor: str = "local", executor_options: ExecutorOptions | None = None,
                   track: str | Sequence[str] | None = None, track_dir: str | Path | None = None,
                   allow_large: bool = False, progress: Callable[[str], None] | None = None,
                   learner_timeout: float | None = None,
                   ) -> tuple[list[dict[str, Any]], list[str], Path]:
    """Fit and score through `executor` (module docstring of `iclbench.executors`), mirroring
    trainings to the `track` trackers (in `track_dir`, default OUT/tracking); returns the records,
    the failures (one line each) and the results file. `cat`: an already loaded catalog (else the
    installed plugins plus `plugins`). `learner_timeout`: seconds a learner's fit, or its scoring
    on one column, may take before it is stopped as a failed record. Everything is checked
    before anything is fitted."""
    seeds = seed_list(seeds)
    n_tasks, batch_size = integer(n_tasks, "n_tasks"), integer(batch_size, "batch_size")
    if n_tasks < 2:
        raise UsageError(f"n_tasks must be at least 2, got {n_tasks}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if learner_timeout is not None and (isinstance(learner_timeout, bool) or not isinstance(learner_timeout, (int, float))
                                        or not 0 < learner_timeout < float("inf")):
        raise UsageError(f"learner_timeout must be a positive number of seconds, got {learner_timeout!r}")
    plugins = unique_files(plugins)
    cat = cat or catalog(plugins)
    options = executor_options or ExecutorOptions(plugin_files=plugins)
    backend = select_executor(cat, executor, options)
    defaults = dict(learner_config or {})
    plan = Plan(learners=learner_specs(learners, defaults, cat), suite=suite_of(cat, suite, task, task_config),
                seeds=seeds, n_tasks=n_tasks, device=device(device_name), dtype=DTYPES[dtype], batch_size=batch_size,
                align_to=reference_spec(align_to, defaults, cat), force=force, learner_timeout=learner_timeout)
    check_plan(plan, cat, allow_large=allow_large)
    try:
        mirrors = select(track, track_dir or Path(out) / "tracking", cat.trackers)
    except TrackerError as err:
        raise UsageError(f"track: {err}") from None
    if mirrors is not None:
        writable_folder(mirrors.folder, "track_dir")
    store = ResultStore(writable_folder(out))
    folder = Path(out) / "checkpoints" if cache == DEFAULT_CACHE else (None if cache is None else Path(cache))
    with tracking(mirrors):
        outcome = backend.evaluate(cat, [plan], store, folder, progress)
    return outcome.records, outcome.failures, store.path


RECORD_COLUMNS = ["suite", "task_label", "label", "learner", "seed", "align_to", "group", "value", "in_distribution",
                  "status", "n_tasks", "seconds", "fit_seconds"]


def frame(records: list[dict[str, Any]]) -> "pd.DataFrame":
    """One row per record: where it was measured, its status, and one column per metric
    (`loss`, `loss_ci95`, `pred_diff`, ...; absent metrics NaN)."""
    import pandas as pd

    rows = [{**{c: r.get(c) for c in RECORD_COLUMNS}, **(r.get("metrics") or {})} for r in records]
    df = pd.DataFrame(rows, columns=None if rows else RECORD_COLUMNS)
    return df.rename(columns={"task_label": "task"})


def evaluate(learners: str | Sequence[str], suite: str | None = None, seeds: Sequence[int] = (0,), *,
             task: str | None = None, task_config: str | dict[str, Any] | None = None,
             learner_config: dict[str, dict[str, Any]] | None = None, n_tasks: int = 10000, device: str = "auto",
             dtype: str = "float32", batch_size: int = 20000, align_to: str | None = None, out: str | Path = "results",
             cache: str | Path | None = DEFAULT_CACHE, force: bool = False, plugins: Iterable[str | Path] = (),
             executor: str = "local", executor_options: ExecutorOptions | None = None,
             track: str | Sequence[str] | None = None, track_dir: str | Path | None = None,
             allow_large: bool = False, progress: bool = False, learner_timeout: float | None = None) -> "pd.DataFrame":
    """Fit `learners` on the suite's training tasks and score them on its evaluation tasks for
    every seed, as `iclbench evaluate` (`suite` default: linear; or one task family, `task`);
    returns one row per record (`frame`). Records already in
    `out` are reused (`force` recomputes); `cache`: checkpoint folder (default OUT/checkpoints,
    None: no cache). `executor` ("local", "ray", ...) and `track` ("tensorboard", "wandb") as the
    CLI's --executor and --track; `learner_timeout` as --learner-timeout. Failed learners are
    stored as failed records, listed in `df.attrs["failures"]`."""
    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    records, failures, _ = run_evaluation(
        learners, suite, seeds, task=task, task_config=task_config, learner_config=learner_config, n_tasks=n_tasks,
        device_name=device, dtype=dtype, batch_size=batch_size, align_to=align_to, out=out, cache=cache, force=force,
        plugins=plugins, executor=executor, executor_options=executor_options, track=track, track_dir=track_dir,
        allow_large=allow_large, progress=say, learner_timeout=learner_timeout)
    df = frame(records)
    df.attrs["failures"] = failures
    return df


def stored(results: str | Path | Sequence[str | Path] = "results") -> list[dict[str, Any]]:
    """Every record in results folders or results.jsonl files."""
    paths = [results] if isinstance(results, (str, Path)) else list(results)
    try:
        return read_all(paths)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None


def records(results: str | Path | Sequence[str | Path] = "results", suite: str | None = None) -> "pd.DataFrame":
    """Stored records as a frame (`frame`), optionally one suite's."""
    return frame([r for r in stored(results) if suite is None or r["suite"] == suite])


def render_leaderboard(recs: list[dict[str, Any]], out: str | Path, formats: Sequence[str], *, plots: bool = True,
                       on_conflict: str = "prefer-most-tasks", option: str = "out") -> list[Path]:
    """Write the tables (`formats`) and plots of `recs` into `out`, pruning what they no longer
    make; never into a published reproduction, which `iclbench publish` re-renders from its own
    records. `option` names `out` in errors (the CLI's --out)."""
    from iclbench import board
    from iclbench.catalog import default_catalog
    from iclbench.suite_labels import plot_labels

    bad = [f for f in formats if f not in board.FORMATS]
    if bad:
        raise UsageError(f"{'--format' if option.startswith('--') else 'formats'}: unknown {', '.join(bad)}; "
                         f"choose from {', '.join(board.FORMATS)}")
    if (Path(out) / "reproduction.json").exists():
        raise UsageError(f"{option} {str(out)!r} is a published reproduction; render elsewhere, "
                         f"or re-render it with `iclbench publish {out}`")
    try:
        return board.render(recs, writable_folder(out, option), tuple(formats), plots=plots, on_conflict=on_conflict,
                            prune=True, **plot_labels(default_catalog(), {r["suite"] for r in recs}))
    except board.ConflictError as err:
        raise UsageError(str(err)) from None


def leaderboard(results: str | Path | Sequence[str | Path] | list[dict[str, Any]] = "results", *,
                suite: str | None = None, out: str | Path | None = None, formats: Sequence[str] = ("md", "csv", "json"),
                plots: bool = True, on_conflict: str = "prefer-most-tasks") -> "pd.DataFrame":
    """The leaderboard of stored records (folders, files, or records themselves): one row per
    (suite, task, learner, metric) with the mean over seeds and its CI, as leaderboard.csv. With
    `out`, also writes the tables and plots there, as `iclbench leaderboard --out`."""
    from iclbench import board
    from iclbench.merge import resolve_conflicts

    recs = results if isinstance(results, list) and results and isinstance(results[0], dict) else stored(results)
    recs = [r for r in recs if suite is None or r["suite"] == suite]
    if not recs:
        raise UsageError("no records" + (f" for suite {suite!r}" if suite else ""))
    if out is not None:
        render_leaderboard(recs, out, formats, plots=plots, on_conflict=on_conflict)
    try:
        kept, _ = resolve_conflicts(recs, on_conflict)
    except board.ConflictError as err:
        raise UsageError(str(err)) from None
    return board.long_table(board.aggregate(board.to_frame(kept)))
