"""The `iclbench` command line: evaluate, leaderboard, list, plugins.

Exit codes: 0 success, 2 usage error (bad option, unknown name, invalid config), 1 run failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any

import torch

from iclbench import leaderboard
from iclbench.analysis import AnalysisContext
from iclbench.checkpoints import cache_dir
from iclbench.config import ConfigError, merge, parse_assignments, parse_spec, split_top_level
from iclbench.plugins import make_plugin_manager
from iclbench.registry import Catalog, DuplicateNameError, UnknownNameError, build_catalog
from iclbench.runner import Evaluation, LearnerSpec, Plan
from iclbench.seeding import device_name, resolve_device
from iclbench.store import ANALYSES_FILE, ResultStore, git_commit, read_all, versions
from iclbench.suite import Suite, SuiteError


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


USAGE_ERRORS = (UsageError, ConfigError, SuiteError, UnknownNameError, DuplicateNameError)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_catalog(args: argparse.Namespace) -> Catalog:
    try:
        return build_catalog(make_plugin_manager(files=tuple(args.plugin or ())))
    except FileNotFoundError as err:
        raise UsageError(f"--plugin: {err}") from None


def parse_int_list(text: str, option: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated integers, got {text!r}") from None


def learner_defaults(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--learner-config` values: `name:key=value,...` or a TOML file of `[name]` tables."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if item.endswith(".toml"):
            path = Path(item)
            if not path.is_file():
                raise UsageError(f"--learner-config: no such file {item!r}")
            for name, table in tomllib.loads(path.read_text()).items():
                out[name] = merge(out.get(name, {}), table)
        elif ":" in item:
            name, body = item.split(":", 1)
            out[name.strip()] = merge(out.get(name.strip(), {}), parse_assignments(body))
        else:
            raise UsageError(f"--learner-config expects NAME:key=value[,...] or a .toml file, got {item!r}")
    return out


def learner_specs(text: str, defaults: dict[str, dict[str, Any]], catalog: Catalog) -> list[LearnerSpec]:
    specs, labels = [], set()
    for item in split_top_level(text):
        name, overrides = parse_spec(item)
        catalog.learners[name]  # unknown names fail here, with a suggestion
        spec = LearnerSpec(name, merge(defaults.get(name, {}), overrides))
        label = spec.build(catalog).label
        if label not in labels:
            labels.add(label)
            specs.append(spec)
    for name in defaults:
        catalog.learners[name]
    if not specs:
        raise UsageError("--learners names no learner")
    return specs


def build_suite(args: argparse.Namespace, catalog: Catalog) -> Suite:
    if args.task and args.suite:
        raise UsageError("give either --suite or --task, not both")
    if args.task:
        overrides = parse_assignments(args.task_config) if args.task_config else {}
        return Suite.single(catalog.tasks[args.task](overrides))
    if args.task_config:
        raise UsageError("--task-config needs --task")
    return catalog.suites.load(args.suite or "linear", catalog)


def device_option(args: argparse.Namespace) -> torch.device:
    try:
        return resolve_device(args.device)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cache_option(args: argparse.Namespace) -> Path | None:
    """The checkpoint folder: --cache, else OUT/checkpoints; none with --no-cache."""
    return None if args.no_cache else Path(args.cache or Path(args.out) / "checkpoints")


def cmd_evaluate(args: argparse.Namespace) -> int:
    catalog = load_catalog(args)
    device = device_option(args)
    defaults = learner_defaults(args.learner_config or [])
    align = None
    if args.align_to:
        name, overrides = parse_spec(args.align_to)
        catalog.learners[name]
        align = LearnerSpec(name, merge(defaults.get(name, {}), overrides))
    if args.n_tasks < 2:
        raise UsageError(f"--n-tasks must be at least 2, got {args.n_tasks}")
    plan = Plan(
        learners=learner_specs(args.learners, defaults, catalog), suite=build_suite(args, catalog),
        seeds=parse_int_list(args.seeds, "--seeds"), n_tasks=args.n_tasks, device=device,
        dtype=DTYPES[args.dtype], batch_size=args.batch_size, align_to=align, force=args.force,
    )
    store = ResultStore(args.out)
    say = (lambda msg: print(msg, file=sys.stderr)) if not args.quiet else None
    with cache_dir(cache_option(args)):
        records = Evaluation(catalog, plan, store, progress=say).run()
    print(leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(records))))
    print(f"{len(records)} records in {store.path}", file=sys.stderr)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    catalog = load_catalog(args)
    device = device_option(args)
    analysis = catalog.analyses[args.name](parse_assignments(args.analysis_config) if args.analysis_config else {})
    suite = build_suite(args, catalog)
    out = Path(args.out)
    results = []
    with cache_dir(cache_option(args)):
        for seed in parse_int_list(args.seeds, "--seeds"):
            ctx = AnalysisContext(catalog, suite, seed, device, args.n_tasks, out / "figures")
            result = {"analysis": analysis.name, "config": analysis.config.model_dump(), "suite": suite.name,
                      "seed": seed, "n_tasks": args.n_tasks, "device_type": device.type, "device": device_name(device), "versions": versions(),
                      "git_commit": git_commit(), "result": analysis.run(ctx)}
            ResultStore(out, ANALYSES_FILE).append(result)
            results.append(result)
            print(json.dumps(result["result"], indent=1))
    print(f"{len(results)} results appended to {out / ANALYSES_FILE}", file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from iclbench.publish import publish
    from iclbench.reproduce import run_reproduction

    catalog = load_catalog(args)
    repro = catalog.reproductions[args.name]()
    budgets = repro.spec().budgets
    if args.budget not in budgets:
        raise UsageError(f"--budget must be one of {', '.join(budgets)}, got {args.budget!r}")
    out = Path(args.out)
    cache = None if args.no_cache else Path(args.cache or ".iclbench-cache")  # outside the published folder
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    run_reproduction(repro, catalog, parse_int_list(args.seeds, "--seeds"), device_option(args), args.budget, out, cache, say,
                     jobs=args.jobs, plugin_files=tuple(args.plugin or ()))
    for path in publish(out, repro):
        print(path)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from iclbench.publish import publish

    catalog = load_catalog(args)
    folder = Path(args.folder)
    if not (folder / "reproduction.json").exists():
        raise UsageError(f"{folder} holds no reproduction.json; run `iclbench reproduce` first")
    name = json.loads((folder / "reproduction.json").read_text())["reproduction"]
    for path in publish(folder, catalog.reproductions[name]()):
        print(path)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    bad = [f for f in formats if f not in leaderboard.FORMATS]
    if bad:
        raise UsageError(f"--format: unknown {', '.join(bad)}; choose from {', '.join(leaderboard.FORMATS)}")
    try:
        records = read_all(args.results)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    if args.suite:
        records = [r for r in records if r["suite"] == args.suite]
    if not records:
        raise UsageError("no records to render" + (f" for suite {args.suite!r}" if args.suite else ""))
    for path in leaderboard.render(records, args.out, formats, plots=not args.no_plots):
        print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(args)
    registry = {"learners": catalog.learners, "tasks": catalog.tasks, "suites": catalog.suites,
                "analyses": catalog.analyses, "reproductions": catalog.reproductions}[args.what]
    for name in registry:
        print(f"{name:20s} {registry.owner(name)}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    catalog = load_catalog(args)
    for p in catalog.plugins.info():
        print(f"{p.name:20s} {p.source:28s} {', '.join(p.hooks)}")
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plugin", action="append", metavar="FILE.py", help="load a single-file plugin (repeatable)")
    fitting = argparse.ArgumentParser(add_help=False, parents=[common])  # commands that fit learners
    fitting.add_argument("--device", default="auto", help="auto, cpu or cuda")
    fitting.add_argument("--cache", help="checkpoint cache for trained learners (default OUT/checkpoints; for reproduce .iclbench-cache/)")
    fitting.add_argument("--no-cache", action="store_true", help="train from scratch, store no checkpoints")
    fitting.add_argument("--compile", action="store_true",
                         help="train through torch.compile (fused kernels; needs a C++ compiler on CPU, Triton on CUDA)")
    p = argparse.ArgumentParser(prog="iclbench", description="Benchmark in-context learners on synthetic regression.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("evaluate", parents=[fitting], help="fit learners on a suite's training tasks and score them")
    e.add_argument("--learners", required=True, help="comma-separated, e.g. gd,gd[steps=2],least-squares")
    e.add_argument("--suite", help="suite name (default: linear)")
    e.add_argument("--task", help="train and evaluate on one task family instead of a suite")
    e.add_argument("--task-config", help="key=value,... for --task")
    e.add_argument("--learner-config", action="append", metavar="NAME:K=V,...|FILE.toml", help="learner options (repeatable)")
    e.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    e.add_argument("--n-tasks", type=int, default=10000, help="evaluation tasks per (task, seed)")
    e.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    e.add_argument("--batch-size", type=int, default=20000, help="tasks per predict call")
    e.add_argument("--align-to", metavar="LEARNER", help="also report alignment against this learner")
    e.add_argument("--out", default="results", help="folder for results.jsonl (default results/)")
    e.add_argument("--force", action="store_true", help="recompute records already stored")
    e.add_argument("--quiet", action="store_true", help="no progress messages")
    e.set_defaults(func=cmd_evaluate)

    lb = sub.add_parser("leaderboard", help="render stored results as tables and plots")
    lb.add_argument("results", nargs="+", help="results folders or results.jsonl files")
    lb.add_argument("--out", default="leaderboard", help="output folder (default leaderboard/)")
    lb.add_argument("--format", default="md,csv,json", help="comma-separated: md, csv, json")
    lb.add_argument("--suite", help="only this suite's records")
    lb.add_argument("--no-plots", action="store_true")
    lb.set_defaults(func=cmd_leaderboard)

    an = sub.add_parser("analyze", parents=[fitting], help="run an analysis (interpolation, repeated, weights, ...)")
    an.add_argument("name", help="analysis name (see: iclbench list analyses)")
    an.add_argument("--analysis-config", help="key=value,... for the analysis")
    an.add_argument("--suite", help="suite name (default: linear)")
    an.add_argument("--task", help="one task family instead of a suite")
    an.add_argument("--task-config", help="key=value,... for --task")
    an.add_argument("--seeds", default="0")
    an.add_argument("--n-tasks", type=int, default=10000)
    an.add_argument("--out", default="results")
    an.set_defaults(func=cmd_analyze)

    rp = sub.add_parser("reproduce", parents=[fitting], help="rerun a paper's experiments and publish them")
    rp.add_argument("name", help="reproduction name, e.g. paper (see: iclbench list reproductions)")
    rp.add_argument("--seeds", default="0,1,2")
    rp.add_argument("--budget", default="full", help="training budget from the spec: full or small")
    rp.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                    help="on a CPU, trainings run this many at a time, one process and thread each (default: the cores)")
    rp.add_argument("--out", default="leaderboard", help="publication folder (default leaderboard/)")
    rp.set_defaults(func=cmd_reproduce)

    pb = sub.add_parser("publish", parents=[common], help="re-render a reproduction folder from its stored records")
    pb.add_argument("folder", nargs="?", default="leaderboard")
    pb.set_defaults(func=cmd_publish)

    ls = sub.add_parser("list", parents=[common], help="list registered learners, tasks or suites")
    ls.add_argument("what", choices=["learners", "tasks", "suites", "analyses", "reproductions"])
    ls.set_defaults(func=cmd_list)

    pl = sub.add_parser("plugins", parents=[common], help="list loaded plugins with their versions and hooks")
    pl.set_defaults(func=cmd_plugins)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # argparse exits with 2 on its own usage errors
    from iclbench.training import compiled_training

    try:
        with compiled_training(getattr(args, "compile", False)):
            return args.func(args)
    except USAGE_ERRORS as err:
        print(f"iclbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iclbench: interrupted; finished records are kept", file=sys.stderr)
        return 1
    except Exception as err:  # a run failure: say what, keep the traceback behind a switch
        if os.environ.get("ICLBENCH_DEBUG"):
            traceback.print_exc()
        print(f"iclbench: run failed: {type(err).__name__}: {err} (ICLBENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
