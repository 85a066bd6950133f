"""What each `iclbench` command does, once `iclbench.cli` has parsed its options.

Every option is validated before anything is fitted, so a usage error (exit 2) never costs a
training; a learner that fails during the run is stored as a failed record, the run goes on,
and the command ends with a summary and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any


from iclbench import api
from iclbench.analysis import AnalysisContext, run_analysis
from iclbench.api import UsageError
from iclbench.catalog import Catalog
from iclbench.checkpoints import cache_dir
from iclbench.config import merge, parse_assignments
from iclbench.executors import Executor, ExecutorOptions, Resources, select_executor
from iclbench.plugins import unique_files
from iclbench import request
from iclbench.request import EvaluationRequest, at_least, cli_option, suite_of, trackers
from iclbench.store import ANALYSES_FILE, ResultStore
from iclbench.suite import Suite
from iclbench.tracking import Tracking, tracking


def usage_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the command was given something unusable: exit 2."""
    return api.usage_errors()


def run(args: argparse.Namespace) -> int:
    from iclbench.train_progress import silenced
    from iclbench.training import compiled_training

    if getattr(args, "plugin", None):  # the same file twice is loaded, shipped and recorded once
        args.plugin = list(unique_files(args.plugin))
    with compiled_training(getattr(args, "compile", False)), silenced(getattr(args, "quiet", False)):
        return COMMANDS[args.command](args)


def load_catalog(args: argparse.Namespace, strict: bool = True) -> Catalog:
    """The installed plugins plus `--plugin` files; `strict=False` lists name clashes instead of
    failing. A file that does not load or a plugin registering something unusable is a usage error."""
    return api.catalog(args.plugin or (), strict=strict, option="--plugin")


def parse_int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{option} names no value, got {text!r}")
    return values


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """`path` as a folder this process can write into, created if missing; else a usage error
    (checked before any fitting, so an unusable --out never costs a training)."""
    return api.writable_folder(path, option)


def toml_file(path: Path, option: str) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{option}: no such file {str(path)!r}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{option} {str(path)!r}: TOML syntax error: {err}") from None


def learner_defaults(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--learner-config` values: `name:key=value,...` or a TOML file of `[name]` tables."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if item.endswith(".toml"):
            for name, table in toml_file(Path(item), "--learner-config").items():
                if not isinstance(table, dict):
                    raise UsageError(f"--learner-config {item!r}: {name!r} must be a [{name}] table of options, "
                                     f"got {name} = {table!r}")
                out[name] = merge(out.get(name, {}), table)
        elif ":" in item:
            name, body = item.split(":", 1)
            out[name.strip()] = merge(out.get(name.strip(), {}), parse_assignments(body))
        else:
            raise UsageError(f"--learner-config expects NAME:key=value[,...] or a .toml file, got {item!r}")
    return out


def build_suite(args: argparse.Namespace, catalog: Catalog) -> Suite:
    """--suite or --task (with --task-config) as a suite, the conflicts named by their options."""
    return suite_of(catalog, args.suite, args.task, args.task_config, cli_option)


def cache_option(args: argparse.Namespace) -> Path | None:
    """The checkpoint folder: --cache, else OUT/checkpoints; none with --no-cache."""
    return None if args.no_cache else Path(args.cache or Path(args.out) / "checkpoints")


def executor_options(args: argparse.Namespace) -> ExecutorOptions:
    """--ray-address, --cpus-per-unit, --gpus-per-unit, --jobs and --plugin as the executors read them."""
    return ExecutorOptions(address=args.ray_address, resources=Resources(args.cpus_per_unit, args.gpus_per_unit),
                           jobs=getattr(args, "jobs", 1), plugin_files=tuple(args.plugin or ()),
                           stack_seeds=getattr(args, "stack_seeds", None))


def executor_option(args: argparse.Namespace, catalog: Catalog) -> Executor:
    """The --executor backend with its options; an unknown name or a bad option is a usage error."""
    return select_executor(catalog, args.executor, executor_options(args))


def track_option(args: argparse.Namespace, catalog: Catalog, default_dir: Path) -> Tracking | None:
    """--track and --track-dir (else `default_dir`), checked before anything is fitted: an
    unknown tracker, a missing package or an unwritable folder is a usage error."""
    return trackers(args.track, Path(args.track_dir or default_dir), catalog, cli_option)


def say(args: argparse.Namespace):
    return None if getattr(args, "quiet", False) else (lambda msg: print(msg, file=sys.stderr))


def summarize_failures(failures: list[str]) -> int:
    """Print what failed and return the exit code: 1 if anything failed."""
    if not failures:
        return 0
    print(f"iclbench: {len(failures)} measurement(s) failed and are stored as failed records "
          "(a rerun retries them):", file=sys.stderr)
    for line in failures:
        print(f"  - {line}", file=sys.stderr)
    return 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`iclbench evaluate`: its options as one `EvaluationRequest` (checked once, errors naming
    the options), run by `iclbench.api.run_evaluation`, the same call a notebook makes."""
    request = EvaluationRequest(
        learners=args.learners, suite=args.suite, task=args.task, task_config=args.task_config,
        seeds=parse_int_list(args.seeds, "--seeds"), learner_config=learner_defaults(args.learner_config or []),
        n_tasks=args.n_tasks, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        align_to=args.align_to, out=args.out, cache=cache_option(args), force=args.force,
        plugins=tuple(args.plugin or ()), executor=args.executor, executor_options=executor_options(args),
        track=args.track, track_dir=args.track_dir, allow_large=args.allow_large,
        learner_timeout=args.learner_timeout, log_samples=args.log_samples, option=cli_option)
    records, failures, path = api.run_evaluation(request, progress=say(args))
    from iclbench import board as leaderboard

    if not args.quiet:
        print(leaderboard.summary(records))
        print(f"{len(records)} records in {path}", file=sys.stderr)
    return summarize_failures(failures)


def cmd_analyze(args: argparse.Namespace) -> int:
    seeds = parse_int_list(args.seeds, "--seeds")
    at_least(args.n_tasks, "--n-tasks", 2)
    catalog = load_catalog(args)
    device = request.device(args.device)
    analysis = catalog.analyses[args.name](parse_assignments(args.analysis_config) if args.analysis_config else {})
    suite = build_suite(args, catalog)
    out = writable_folder(args.out)
    track = track_option(args, catalog, out / "tracking")
    results = []
    with cache_dir(cache_option(args)), tracking(track):
        for seed in seeds:
            result = run_analysis(analysis, AnalysisContext(catalog, suite, seed, device, args.n_tasks, out / "figures"))
            ResultStore(out, ANALYSES_FILE).append(result)
            results.append(result)
            if not args.quiet:
                print(json.dumps(result["result"], indent=1))
    if not args.quiet:
        print(f"{len(results)} results appended to {out / ANALYSES_FILE}", file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from iclbench.publish import publish
    from iclbench.reproduce import run_reproduction

    seeds = parse_int_list(args.seeds, "--seeds")
    at_least(args.jobs, "--jobs", 1)
    catalog = load_catalog(args)
    executor = executor_option(args, catalog)
    repro = catalog.reproductions[args.name]()
    budgets = repro.spec().budgets
    if args.budget not in budgets:
        raise UsageError(f"--budget must be one of {', '.join(budgets)}, got {args.budget!r}")
    device = request.device(args.device)
    out = writable_folder(args.out)
    cache = None if args.no_cache else Path(args.cache or ".iclbench-cache")  # outside the published folder
    track = track_option(args, catalog, Path(".iclbench-tracking"))  # like the cache, outside the published folder
    with tracking(track):
        failures = run_reproduction(repro, catalog, seeds, device, args.budget, out, cache,
                                    say(args) or (lambda msg: None), jobs=args.jobs,
                                    plugin_files=tuple(args.plugin or ()), allow_large=args.allow_large,
                                    executor=executor, log_samples=args.log_samples)
    written = publish(out, repro)
    if args.html:
        written += write_sites(out, repro, catalog)
    if not args.quiet:
        for path in written:
            print(path)
    return summarize_failures(failures)


def cmd_publish(args: argparse.Namespace) -> int:
    from iclbench.publish import publish
    from iclbench.reproduce import reproduction_name

    catalog = load_catalog(args)
    folder = Path(args.folder)
    if not (folder / "reproduction.json").exists():
        raise UsageError(f"{folder} holds no reproduction.json; run `iclbench reproduce` first")
    repro = catalog.reproductions[reproduction_name(folder)]()
    written = publish(folder, repro)
    if args.html:
        written += write_sites(folder, repro, catalog)
    for path in written:
        print(path)
    return 0


def write_sites(folder: Path, repro, catalog: Catalog) -> list[Path]:
    """The HTML site of `folder` and of the reproductions published inside it (theirs first, so
    the index links to their sites)."""
    from iclbench.reproduce import reproduction_name
    from iclbench.site import published_subfolders, write_site

    written = []
    for sub in published_subfolders(folder):
        written += write_sites(sub, catalog.reproductions[reproduction_name(sub)](), catalog)
    return written + write_site(folder, repro)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    records = api.stored(args.results)
    if args.suite:
        records = [r for r in records if r["suite"] == args.suite]
    if not records:
        raise UsageError("no records to render" + (f" for suite {args.suite!r}" if args.suite else ""))
    first = Path(args.results[0])  # default: leaderboard/ inside the first results folder
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "leaderboard"
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    for path in api.render_leaderboard(records, out, formats, plots=not args.no_plots, on_conflict=args.on_conflict,
                                       option="--out"):
        print(path)
    return 0


def print_clashes(catalog: Catalog) -> None:
    for clash in catalog.clashes:
        print(f"CLASH: {clash} (the first is used; `evaluate` refuses until one is renamed or uninstalled)")


def summary(registry, name: str) -> str:
    """One line saying what a registered name is: the first sentence of its `description`, else
    of its docstring."""
    if hasattr(registry, "spec"):  # suites: their files' description
        text = registry.spec(name).description
    elif hasattr(registry[name], "spec_file"):  # reproductions: their spec's
        text = registry[name]().spec().description
    else:
        obj = registry[name]
        text = getattr(obj, "description", "") or (obj.__doc__ or "")
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


def print_rows(rows: list[dict[str, str]], as_json: bool) -> None:
    """Rows as aligned columns (each as wide as its longest entry), or as a JSON list."""
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(str(r[k])) for r in rows) for k in keys[:-1]}
    for r in rows:
        print("  ".join([f"{str(r[k]):{widths[k]}s}" for k in keys[:-1]] + [str(r[keys[-1]])]).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(args, strict=False)
    registry = {"learners": catalog.learners, "tasks": catalog.tasks, "suites": catalog.suites,
                "analyses": catalog.analyses, "reproductions": catalog.reproductions,
                "executors": catalog.executors, "trackers": catalog.trackers}[args.what]
    print_rows([{"name": name, "plugin": registry.owner(name), "description": summary(registry, name)}
                for name in registry], args.json)
    if not args.json:
        print_clashes(catalog)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    catalog = load_catalog(args, strict=False)
    print_rows([{"name": p.name, "source": p.source, "hooks": ", ".join(p.hooks)} for p in catalog.plugins.info()],
               args.json)
    if not args.json:
        print_clashes(catalog)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from iclbench.describe import describe

    print(describe(load_catalog(args, strict=False), args.name))
    return 0


COMMANDS = {"evaluate": cmd_evaluate, "analyze": cmd_analyze, "reproduce": cmd_reproduce, "publish": cmd_publish,
            "leaderboard": cmd_leaderboard, "list": cmd_list, "plugins": cmd_plugins, "describe": cmd_describe}
