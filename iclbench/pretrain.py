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
            if getattr(learner.config, "train", None) is None:
                continue  # nothing to meta-train
            for seed in seeds:
                jobs.setdefault((label, distribution, seed), TrainJob(label, suite, seed, learner.config.train.steps))
    return sorted(jobs.values(), key=lambda j: (-j.steps, j.spec, j.suite, j.seed))


def _run(job: TrainJob, device: str, cache: Path, plugin_files: tuple[str, ...], compile_: bool) -> tuple[TrainJob, float]:
    os.environ["TQDM_DISABLE"] = "1"  # bars from several processes would interleave
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
    return job, time.perf_counter() - start


def as_completed_jobs(jobs: list[TrainJob], futures: list) -> Iterator[tuple[TrainJob, Future]]:
    """(job, future) pairs in the order the trainings finish."""
    which = dict(zip(futures, jobs))
    for future in as_completed(futures):
        yield which[future], future


def pretrain(jobs: list[TrainJob], workers: int, device: torch.device, cache: Path,
             plugin_files: tuple[str, ...] = (), progress: Callable[[str], None] = lambda m: None) -> None:
    """Run `jobs` in `workers` single-threaded processes; each result lands in `cache`."""
    if not jobs:
        return
    from iclbench.training import compiling

    progress(f"training {len(jobs)} learner/seed pairs in {workers} processes")
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run, job, str(device), cache, tuple(map(str, plugin_files)), compiling()) for job in jobs]
        try:
            for done, (job, future) in enumerate(as_completed_jobs(jobs, futures), 1):
                try:
                    _, seconds = future.result()
                except Exception as err:  # the evaluation trains it again and records the failure
                    progress(f"[{done}/{len(jobs)}] training {job.spec} on {job.suite}, seed {job.seed} failed: "
                             f"{type(err).__name__}: {err}")
                    continue
                progress(f"[{done}/{len(jobs)}] trained {job.spec} on {job.suite}, seed {job.seed}: {seconds:.0f} s")
        except BaseException:
            # stop the trainings under way too (they keep their last checkpoint, and resume from it):
            # left running, they would outlive this process, holding their checkpoints' locks
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
