"""The `iclbench` command line: its options, exit codes and signal handling.

Exit codes: 0 success, 2 usage error (bad option, unknown name, invalid config, unusable
--out), 1 run failure (including learners that failed while the run went on), 130 on Ctrl-C
and 143 on SIGTERM; finished records are kept either way. The commands themselves live in
`iclbench.commands`, imported only once a command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
import warnings

from iclbench import __version__
from iclbench.watchdog import Interrupted  # the runner's class: a learner's call lets it through (stdlib only)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; options without a useful default say nothing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or action.option_strings == [] \
                or "default" in (action.help or ""):  # no default, or the help says it in words
            return action.help or ""
        return super()._get_help_string(action)


def add_common(p: argparse.ArgumentParser) -> None:
    """--plugin, which every command that loads plugins takes."""
    p.add_argument("--plugin", action="append", metavar="FILE.py", help="load a single-file plugin (repeatable)")


def add_fitting(p: argparse.ArgumentParser) -> None:
    """Options of commands that fit learners, listed after the command's own."""
    g = p.add_argument_group("fitting")
    add_common(g)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps")
    g.add_argument("--cache", help="checkpoint cache for trained learners (default OUT/checkpoints; for reproduce .iclbench-cache/)")
    g.add_argument("--no-cache", action="store_true", help="train from scratch, store no checkpoints")
    g.add_argument("--track", metavar="NAME[,NAME]",
                   help="mirror each training's curves to these trackers: tensorboard, wandb (see: iclbench plugins)")
    g.add_argument("--track-dir", metavar="DIR",
                   help="the trackers' folder (default OUT/tracking; for reproduce .iclbench-tracking/)")
    g.add_argument("--compile", action="store_true",
                   help="train through torch.compile (fused kernels; needs a C++ compiler on CPU, Triton on CUDA)")
    g.add_argument("--allow-large", action="store_true",
                   help="run work whose estimated memory exceeds this machine's (refused otherwise)")
    g.add_argument("--quiet", action="store_true",
                   help="print nothing but warnings and errors: no progress, no training lines, no result tables")


def add_executing(p: argparse.ArgumentParser) -> None:
    """Options of commands that run (learner, suite, seed) units: where they run."""
    g = p.add_argument_group("execution")
    g.add_argument("--executor", default="local", metavar="NAME",
                   help="where units run: local (this process) or ray (pip install iclbench[ray]); see docs/scaling.md")
    g.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="an existing Ray cluster for --executor ray (default: start a local one)")
    g.add_argument("--cpus-per-unit", type=float, default=1.0,
                   help="CPUs (and torch threads) each unit holds, for --executor ray")
    g.add_argument("--gpus-per-unit", type=float, metavar="G",
                   help="GPUs each unit holds, for --executor ray; a fraction shares one (0.25: four units "
                        "per GPU); default 1 on a CUDA --device, else 0")


def parser() -> argparse.ArgumentParser:
    fmt = {"formatter_class": HelpFormatter}
    p = argparse.ArgumentParser(prog="iclbench", description="Benchmark in-context learners on synthetic regression.", **fmt)
    p.add_argument("--version", action="version", version=f"iclbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("evaluate", help="fit learners on a suite's training tasks and score them", **fmt)
    e.add_argument("--learners", required=True, help="comma-separated, e.g. gd,gd[steps=2],least-squares")
    e.add_argument("--suite", help="suite name or path to a suite .toml file (default: linear)")
    e.add_argument("--task", help="train and evaluate on one task family instead of a suite")
    e.add_argument("--task-config", help="key=value,... for --task")
    e.add_argument("--learner-config", action="append", metavar="NAME:K=V,...|FILE.toml", help="learner options (repeatable)")
    e.add_argument("--seeds", default="0", help="comma-separated seeds")
    e.add_argument("--n-tasks", type=int, default=10000, help="evaluation tasks per (task, seed)")
    e.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    e.add_argument("--batch-size", type=int, default=20000, help="tasks per predict call")
    e.add_argument("--align-to", metavar="LEARNER", help="also report alignment and paired loss differences against this learner")
    e.add_argument("--out", default="results", help="folder for results.jsonl")
    e.add_argument("--force", action="store_true", help="recompute records already stored")
    e.add_argument("--learner-timeout", type=float, metavar="SECONDS",
                   help="stop a learner's fit, or its scoring on one column, after this long (a failed record)")
    e.add_argument("--log-samples", action="store_true",
                   help="also store each record's per-task predictions, targets and losses in OUT/samples/ (.npz)")
    add_fitting(e)
    add_executing(e)
    e.set_defaults(command="evaluate")

    lb = sub.add_parser("leaderboard", help="render stored results as tables and plots", **fmt)
    lb.add_argument("results", nargs="+", help="results folders or results.jsonl files")
    lb.add_argument("--out", help="output folder (default: RESULTS/leaderboard for the first results folder)")
    lb.add_argument("--format", default="md,csv,json",
                    help="comma-separated: md, csv, json, html (a static site in OUT/site/, with leaderboard.json)")
    lb.add_argument("--suite", help="only this suite's records")
    lb.add_argument("--no-plots", action="store_true", help="tables only: draw no figures")
    lb.add_argument("--on-conflict", default="prefer-most-tasks", choices=["prefer-most-tasks", "newest", "error"],
                    help="records of the same measurement that disagree: which to keep, or stop")
    lb.set_defaults(command="leaderboard")

    an = sub.add_parser("analyze", help="run an analysis (interpolation, repeated, weights, ...)", **fmt)
    an.add_argument("name", help="analysis name (see: iclbench list analyses)")
    an.add_argument("--analysis-config", help="key=value,... for the analysis")
    an.add_argument("--suite", help="suite name or path to a suite .toml file (default: linear)")
    an.add_argument("--task", help="one task family instead of a suite")
    an.add_argument("--task-config", help="key=value,... for --task")
    an.add_argument("--seeds", default="0", help="comma-separated seeds")
    an.add_argument("--n-tasks", type=int, default=10000, help="evaluation tasks per seed")
    an.add_argument("--out", default="results", help="folder for analyses.jsonl and figures/")
    add_fitting(an)
    an.set_defaults(command="analyze")

    rp = sub.add_parser("reproduce", help="rerun a paper's experiments and publish them", **fmt)
    rp.add_argument("name", help="reproduction name, e.g. paper (see: iclbench list reproductions)")
    rp.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    rp.add_argument("--budget", default="full", help="training budget from the spec: full or small")
    rp.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
                    help="on a CPU, trainings run this many at a time, one process and thread each (default: this machine's cores)")
    rp.add_argument("--stack-seeds", nargs="?", const="exact", choices=["exact", "close"], default=None,
                    help="train the seeds of each configuration as one stacked model (a GPU does M models' work per "
                         "step); exact (the default): only where that is bit for bit one-by-one training, checked "
                         "on a batch first, else one by one; close: float rounding apart is accepted")
    rp.add_argument("--out", default="leaderboard", help="publication folder")
    rp.add_argument("--html", action="store_true",
                    help="also write a static HTML site into OUT/site/ (open site/index.html; no server needed)")
    rp.add_argument("--log-samples", action="store_true",
                    help="also store each record's per-task predictions, targets and losses in OUT/samples/ (.npz)")
    add_fitting(rp)
    add_executing(rp)
    rp.set_defaults(command="reproduce")

    pb = sub.add_parser("publish", help="re-render a reproduction folder from its stored records", **fmt)
    pb.add_argument("folder", nargs="?", default="leaderboard")
    pb.add_argument("--html", action="store_true",
                    help="also write a static HTML site into FOLDER/site/ (and into each reproduction inside it)")
    add_common(pb)
    pb.set_defaults(command="publish")

    ls = sub.add_parser("list", help="list registered learners, tasks, suites, analyses, reproductions, executors or trackers", **fmt)
    ls.add_argument("what", choices=["learners", "tasks", "suites", "analyses", "reproductions", "executors", "trackers"])
    ls.add_argument("--json", action="store_true", help="a JSON list of {name, plugin, description}")
    add_common(ls)
    ls.set_defaults(command="list")

    pl = sub.add_parser("plugins", help="list loaded plugins with their versions and hooks", **fmt)
    pl.add_argument("--json", action="store_true", help="a JSON list of {name, source, hooks}")
    add_common(pl)
    pl.set_defaults(command="plugins")

    ds = sub.add_parser("describe", help="show a learner's, task's, suite's, analysis's or reproduction's options", **fmt)
    ds.add_argument("name")
    add_common(ds)
    ds.set_defaults(command="describe")
    return p


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the CLI prints it: one line, no Python source under it."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"iclbench: warning: {message}{kind}\n"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)  # argparse exits with 2 on its own usage errors
    from iclbench import commands

    formatwarning, warnings.formatwarning = warnings.formatwarning, one_line_warning

    in_main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main_thread else ()  # handlers only install there
    handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in signals}
    try:
        return commands.run(args)
    except BrokenPipeError:  # the reader stopped reading (`iclbench list learners | head`): not a failure
        if sys.stdout is sys.__stdout__:  # the process's own stdout: keep its exit-time flush quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Interrupted as stop:
        name = signal.Signals(stop.signum).name
        print(f"iclbench: interrupted by {name}; finished records are kept, and rerunning the same command resumes",
              file=sys.stderr)
        return 128 + stop.signum
    except Exception as err:
        if isinstance(err, commands.usage_errors()):
            print(f"iclbench: error: {err}", file=sys.stderr)
            return 2
        if os.environ.get("ICLBENCH_DEBUG"):
            traceback.print_exc()
        print(f"iclbench: run failed: {type(err).__name__}: {err} (ICLBENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
