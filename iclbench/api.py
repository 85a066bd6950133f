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

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from iclbench.errors import UsageError
from iclbench.executors import ExecutorOptions
from iclbench.request import DEFAULT_CACHE, EvaluationRequest, catalog, writable_folder
from iclbench.store import read_all
from iclbench.tracking import tracking

if TYPE_CHECKING:  # pandas loads when a frame is made, so the CLI's light commands stay light
    import pandas as pd

__all__ = ["catalog", "evaluate", "leaderboard", "records", "stored", "frame", "run_evaluation",
           "EvaluationRequest", "UsageError", "usage_errors", "writable_folder"]


def usage_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the request was unusable (the CLI's exit 2): UsageError, whose
    subclasses are every usage error iclbench raises (a suite file's SuiteError included)."""
    return (UsageError,)


def run_evaluation(request: EvaluationRequest, progress: Callable[[str], None] | None = None,
                   ) -> tuple[list[dict[str, Any]], list[str], Path]:
    """Check `request` (`EvaluationRequest.resolve`: everything before anything is fitted), then
    fit and score through its executor (module docstring of `iclbench.executors`), mirroring
    trainings to its trackers; returns the records, the failures (one line each) and the
    results file."""
    run = request.resolve()
    with tracking(run.trackers):
        outcome = run.executor.evaluate(run.catalog, [run.plan], run.store, run.cache, progress)
    return outcome.records, outcome.failures, run.store.path


RECORD_COLUMNS = ["suite", "task_label", "label", "learner", "seed", "align_to", "group", "value", "in_distribution",
                  "status", "n_tasks", "seconds", "fit_seconds"]


def frame(records: list[dict[str, Any]]) -> "pd.DataFrame":
    """One row per record: where it was measured, its status, and one column per metric
    (`loss`, `loss_ci95`, `pred_diff`, ...; absent metrics NaN)."""
    import pandas as pd

    rows = [{**{c: r.get(c) for c in RECORD_COLUMNS}, **(r.get("metrics") or {})} for r in records]
    df = pd.DataFrame(rows, columns=None if rows else RECORD_COLUMNS)
    return df.rename(columns={"task_label": "task"})


def evaluate(learners: str | Sequence[Any], suite: str | None = None, seeds: Sequence[int] = (0,), *,
             task: str | None = None, task_config: str | dict[str, Any] | None = None,
             learner_config: dict[str, dict[str, Any]] | None = None, n_tasks: int = 10000, device: str = "auto",
             dtype: str = "float32", batch_size: int = 20000, align_to: str | None = None, out: str | Path = "results",
             cache: str | Path | None = DEFAULT_CACHE, force: bool = False, plugins: Iterable[str | Path] = (),
             executor: str = "local", executor_options: ExecutorOptions | None = None,
             track: str | Sequence[str] | None = None, track_dir: str | Path | None = None,
             allow_large: bool = False, progress: bool = False, learner_timeout: float | None = None,
             log_samples: bool = False) -> "pd.DataFrame":
    """Fit `learners` on the suite's training tasks and score them on its evaluation tasks for
    every seed, as `iclbench evaluate` (`suite` default: linear; or one task family, `task`);
    returns one row per record (`frame`). `learners`: spec strings ("gd[steps=2]"), and
    `Learner` subclasses or instances defined in this session, registered for this call
    (`iclbench.session`). Records already in
    `out` are reused (`force` recomputes); `cache`: checkpoint folder (default OUT/checkpoints,
    None: no cache). `executor` ("local", "ray", ...) and `track` ("tensorboard", "wandb") as the
    CLI's --executor and --track; `learner_timeout` as --learner-timeout; `log_samples` as
    --log-samples (per-task outputs, read back by `records(..., samples=True)`). Failed learners
    are stored as failed records, listed in `df.attrs["failures"]`."""
    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    request = EvaluationRequest(
        learners, suite, seeds, task=task, task_config=task_config, learner_config=learner_config, n_tasks=n_tasks,
        device=device, dtype=dtype, batch_size=batch_size, align_to=align_to, out=out, cache=cache, force=force,
        plugins=tuple(plugins), executor=executor, executor_options=executor_options, track=track,
        track_dir=track_dir, allow_large=allow_large, learner_timeout=learner_timeout, log_samples=log_samples)
    records, failures, _ = run_evaluation(request, say)
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


def records(results: str | Path | Sequence[str | Path] = "results", suite: str | None = None,
            samples: bool = False) -> "pd.DataFrame":
    """Stored records as a frame (`frame`), optionally one suite's; with `samples`, a `samples`
    column holding each record's per-task arrays (`iclbench.samples`; None where it was
    measured without --log-samples)."""
    paths = [results] if isinstance(results, (str, Path)) else list(results)
    recs, per_task = [], []
    for path in paths:
        root = Path(path) if Path(path).is_dir() else Path(path).parent
        for r in stored(path):
            if suite is None or r["suite"] == suite:
                recs.append(r)
                per_task.append(sample_arrays(root, r) if samples else None)
    df = frame(recs)
    if samples:
        df["samples"] = per_task
    return df


def sample_arrays(root: Path, rec: dict[str, Any]) -> dict[str, Any] | None:
    """A record's per-task arrays, or None where it has none."""
    from iclbench import samples

    return samples.load(root, rec) if samples.present(root, rec) else None


def render_leaderboard(recs: list[dict[str, Any]], out: str | Path, formats: Sequence[str], *, plots: bool = True,
                       on_conflict: str = "prefer-most-tasks", option: str = "out") -> list[Path]:
    """Write the tables (`formats`) and plots of `recs` into `out`, pruning what they no longer
    make; never into a published reproduction, which `iclbench publish` re-renders from its own
    records. Format `html` also writes the site (`out/site/`, from leaderboard.json, which it
    writes too). `option` names `out` in errors (the CLI's --out)."""
    from iclbench import board
    from iclbench.catalog import default_catalog
    from iclbench.suite_labels import plot_labels

    known = board.FORMATS + ("html",)
    bad = [f for f in formats if f not in known]
    if bad:
        raise UsageError(f"{'--format' if option.startswith('--') else 'formats'}: unknown {', '.join(bad)}; "
                         f"choose from {', '.join(known)}")
    if (Path(out) / "reproduction.json").exists():
        raise UsageError(f"{option} {str(out)!r} is a published reproduction; render elsewhere, "
                         f"or re-render it with `iclbench publish {out}`")
    html = "html" in formats
    tables = tuple(dict.fromkeys([f for f in formats if f != "html"] + (["json"] if html else [])))  # the site reads json
    try:
        written = board.render(recs, writable_folder(out, option), tables, plots=plots, on_conflict=on_conflict,
                               prune=True, **plot_labels(default_catalog(), {r["suite"] for r in recs}))
    except board.ConflictError as err:
        raise UsageError(str(err)) from None
    if html:
        from iclbench.site import write_results_site

        written += write_results_site(Path(out), recs)
    return written


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
