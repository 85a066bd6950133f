"""Meta-train learners ahead of evaluation, several at once, into the checkpoint cache.

On a CPU the small batched products of in-context Transformers use a second core poorly
within one process; separate processes, one thread each, use it fully. The trainings land
in the cache under the same keys the evaluation looks up, so evaluation then loads them.
Longest trainings start first, so the pool finishes together.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

import torch

from iclbench.config import parse_spec


@dataclass(frozen=True)
class TrainJob:
    """One (learner, suite, seed) training, as evaluation would run it."""

    spec: str  # learner label, budget included
    suite: str
    seed: int
    steps: int  # for scheduling: longest first


def train_jobs(catalog, runs: list[tuple[str, list[str]]], seeds: list[int]) -> list[TrainJob]:
    """The distinct trainings that `runs` ((suite, learner labels) pairs) need, longest first.

    Suites that share a training distribution share the training (one cache entry), so it is
    one job: two workers must not train it side by side."""
    jobs = {}
    for suite, labels in runs:
        train = catalog.suites.load(suite, catalog).train
        distribution = (train.name, json.dumps(train.config.model_dump(), sort_keys=True))
        for label in labels:
            name, overrides = parse_spec(label)
            learner = catalog.learners[name](overrides)
            train = learner.train_config()
            if train is None:
                continue  # nothing to meta-train
            for seed in seeds:
                jobs.setdefault((label, distribution, seed), TrainJob(label, suite, seed, train.steps))
    return sorted(jobs.values(), key=lambda j: (-j.steps, j.spec, j.suite, j.seed))


def _run(job: TrainJob, device: str, cache: Path, plugin_files: tuple[str, ...], compile_: bool) -> tuple[TrainJob, float]:
    os.environ["TQDM_DISABLE"] = "1"  # bars from several processes would interleave: plain lines instead
    torch.set_num_threads(1)
    from iclbench.catalog import catalog_from_files
    from iclbench.checkpoints import cache_dir
    from iclbench.runner import fit_for_evaluation
    from iclbench.training import compiled_training

    catalog = catalog_from_files(plugin_files)
    name, overrides = parse_spec(job.spec)
    learner = catalog.learners[name](overrides)
    start = time.perf_counter()
    with cache_dir(cache), compiled_training(compile_):
        fit_for_evaluation(learner, catalog.suites.load(job.suite, catalog).train, job.seed, torch.device(device))
    info = learner.fit_info()
    note = " (loaded from cache)" if info.get("from_cache") else (
        f" (resumed at step {info['resumed_at']})" if info.get("resumed_at") else "")
    return job, time.perf_counter() - start, note


def seed_groups(jobs: list[TrainJob]) -> list[tuple[TrainJob, ...]]:
    """`jobs` grouped by configuration (learner spec and suite), each group its seeds, longest first."""
    groups: dict[tuple[str, str], list[TrainJob]] = {}
    for job in jobs:
        groups.setdefault((job.spec, job.suite), []).append(job)
    return sorted((tuple(g) for g in groups.values()), key=lambda g: (-g[0].steps, g[0].spec, g[0].suite))


def _run_stacked(group: tuple[TrainJob, ...], device: str, cache: Path, plugin_files: tuple[str, ...],
                 compile_: bool, exact: bool) -> tuple[TrainJob, float, str]:
    """The seeds of one configuration trained as one stacked model (`iclbench.stacked`): each
    seed's fit is run with its training captured, then the captured trainings run together
    (bit for bit as one by one with `exact`). Returns the note for the progress line."""
    os.environ["TQDM_DISABLE"] = "1"
    if device == "cpu":
        torch.set_num_threads(1)
    from iclbench.catalog import catalog_from_files
    from iclbench.checkpoints import cache_dir
    from iclbench.runner import fit_for_evaluation
    from iclbench.stacked import train_recipes
    from iclbench.training import capturing_trainings

    catalog = catalog_from_files(plugin_files)
    name, overrides = parse_spec(group[0].spec)
    train = catalog.suites.load(group[0].suite, catalog).train
    start = time.perf_counter()
    with cache_dir(cache):
        with capturing_trainings() as recipes:
            for job in group:
                fit_for_evaluation(catalog.learners[name](overrides), train, job.seed, torch.device(device))
        said: list[str] = []
        train_recipes(recipes, said.append, exact=exact)
    why = [msg.removeprefix(f"{recipes[0].desc}: ") for msg in said]  # "3 seeds trained one by one (...)"
    return group[0], time.perf_counter() - start, f" ({'; '.join(why)})" if why else " (stacked)"


def as_completed_jobs(jobs: list[TrainJob], futures: list) -> Iterator[tuple[TrainJob, Future]]:
    """(job, future) pairs in the order the trainings finish."""
    which = dict(zip(futures, jobs))
    for future in as_completed(futures):
        yield which[future], future


def pretrain(jobs: list[TrainJob], workers: int, device: torch.device, cache: Path,
             plugin_files: tuple[str, ...] = (), progress: Callable[[str], None] = lambda m: None,
             stack: str | None = None) -> None:
    """Run `jobs` in `workers` single-threaded processes; each result lands in `cache`. With
    `stack` ("exact" or "close", `--stack-seeds`), the seeds of each configuration train
    together as one stacked model."""
    if not jobs:
        return
    from iclbench.training import compiling

    files = tuple(map(str, plugin_files))
    if stack:
        groups = seed_groups(jobs)
        progress(f"training {len(jobs)} learner/seed pairs as {len(groups)} stacked models in {workers} processes")
        submit = lambda pool, g: pool.submit(_run_stacked, g, str(device), cache, files, compiling(),
                                                 stack == "exact")  # noqa: E731
        seeds = {(g[0].spec, g[0].suite): ",".join(str(j.seed) for j in g) for g in groups}
        jobs = [g[0] for g in groups]
    else:
        progress(f"training {len(jobs)} learner/seed pairs in {workers} processes")
        groups = jobs
        seeds = {}
        submit = lambda pool, job: pool.submit(_run, job, str(device), cache, files, compiling())  # noqa: E731
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [submit(pool, g) for g in groups]
        try:
            for done, (job, future) in enumerate(as_completed_jobs(jobs, futures), 1):
                which = f"seeds {seeds[(job.spec, job.suite)]}" if stack else f"seed {job.seed}"
                try:
                    _, seconds, note = future.result()
                except Exception as err:  # the evaluation trains it again and records the failure
                    progress(f"[{done}/{len(jobs)}] training {job.spec} on {job.suite}, {which} failed: "
                             f"{type(err).__name__}: {err}")
                    continue
                progress(f"[{done}/{len(jobs)}] trained {job.spec} on {job.suite}, {which}: {seconds:.0f} s{note}")
        except BaseException:
            # stop the trainings under way too (they keep their last checkpoint, and resume from it):
            # left running, they would outlive this process, holding their checkpoints' locks
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
