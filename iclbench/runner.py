"""evaluate(learners x suite x seeds) -> result records.

For each seed every learner is fitted on the suite's training distribution, then all
learners are scored on the *same* evaluation tasks (paired comparisons, alignment), each
drawn from its own seeded stream. Records are stored as soon as they exist.

A learner's output is checked before it is scored: a wrong shape, device or dtype is an
error naming the learner; non-finite predictions or losses give a `diverged` record; anything
a learner raises in fit or predict (`sys.exit()` included, the user's Ctrl-C excepted), a
`hyperparameters()` / `fit_info()` that is not JSON, a write into the tasks it was handed
(`iclbench.isolation`) or a call past `Plan.learner_timeout` gives a `failed` record naming the
stage, and the run goes on with the others, whose numbers stay bit for bit what they were.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from iclbench import samples
from iclbench.checks import LearnerOutputError, check_output, learner_info  # noqa: F401  (re-exported)
from iclbench.episode import Episode
from iclbench.isolation import guard
from iclbench.learner import Learner
from iclbench.lookup import CatalogView
from iclbench.metrics import (alignment, cosine_against, defined_mean_ci95, mean_ci95, robust_loss, sensitivities,
                              task_losses)
from iclbench.positions import is_sequence, position_predictions, position_sensitivities, score_positions
from iclbench.prefix import prefix_curve
from iclbench.seeding import device_name, generator
from iclbench.codehash import core_digest, git_dirty
from iclbench.store import ResultStore, git_commit, record_key, unit_key, versions
from iclbench.suite import EvalTask, Suite
from iclbench.task import Task
from iclbench.train_progress import training_of
from iclbench.watchdog import learner_fault, watched


def fit_for_evaluation(learner: Learner, train_task, seed: int, device: torch.device) -> None:
    """Fit `learner` exactly as an evaluation of `seed` does (same generator stream), on its own
    copy of the training task, so nothing it does to the task reaches the next learner."""
    with training_of(f"{train_task.label}, seed {seed}"):
        learner.fit(copy.deepcopy(train_task), generator=generator(device, seed, "train"), device=device)


@dataclass(frozen=True)
class LearnerSpec:
    """A learner name with config overrides, e.g. `gd[steps=2]`."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    _prototype: tuple[type, Learner] | None = field(default=None, compare=False, repr=False)

    def build(self, catalog: CatalogView) -> Learner:
        """A fresh learner, to be fitted: one per seed, so nothing fitted leaks across seeds."""
        return catalog.learners[self.name](self.overrides)

    def prototype(self, catalog: CatalogView) -> Learner:
        """The unfitted learner this spec names, built once per catalog class: its label, its
        config checks and its workload. Never fitted (`build` makes the ones that are)."""
        cls = catalog.learners[self.name]
        if self._prototype is None or self._prototype[0] is not cls:
            object.__setattr__(self, "_prototype", (cls, cls(self.overrides)))
        return self._prototype[1]

    def __getstate__(self) -> dict[str, Any]:  # a worker's catalog builds its own prototype
        return {"name": self.name, "overrides": self.overrides, "_prototype": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


@dataclass
class Plan:
    learners: list[LearnerSpec]
    suite: Suite
    seeds: list[int]
    n_tasks: int = 10000
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    batch_size: int = 20000
    align_to: LearnerSpec | None = None
    force: bool = False
    learner_timeout: float | None = None  # seconds a learner's fit or predict on one column may take
    log_samples: bool = False  # each record's per-task outputs beside results.jsonl (`iclbench.samples`)


def predict_chunked(learner: Learner, episode: Episode, batch_size: int) -> torch.Tensor:
    """(B, dy) checked predictions, `batch_size` tasks at a time to bound memory."""
    with torch.no_grad():
        parts = []
        for i in range(0, episode.batch_size, batch_size):
            chunk = episode.slice(i, i + batch_size)
            parts.append(check_output(learner, chunk, learner.predict(chunk)))
    return torch.cat(parts)


def sensitivities_chunked(learner: Learner, episode: Episode, batch_size: int) -> torch.Tensor:
    """(B, dy, dx) query sensitivities, chunked like predictions."""
    parts = [sensitivities(learner.predict, episode.slice(i, i + batch_size)) for i in range(0, episode.batch_size, batch_size)]
    return torch.cat(parts)


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class Evaluation:
    """One `iclbench evaluate` run; `run()` returns every record it produced or found stored.

    `failures` lists one line per failed (learner, task, seed) once `run()` returns."""

    def __init__(self, catalog: CatalogView, plan: Plan, store: ResultStore,
                 progress: Callable[[str], None] | None = None) -> None:
        self.catalog, self.plan, self.store = catalog, plan, store
        self.learners = [s.prototype(catalog) for s in plan.learners]  # validates every config up front
        self.reference = plan.align_to.prototype(catalog) if plan.align_to else None  # for its label
        self.reference_warned = False  # a diverged reference is warned about once per run
        self.progress = progress or (lambda msg: None)
        self.stored: dict[str, dict[str, Any]] = {}
        self._read_size: int | None = None  # the store's size when this run last had all of it
        self.refresh()
        self.reference_seed: int | None = None  # the seed the reference learner is fitted for
        self.failures: list[str] = []

    def refresh(self) -> None:
        """Re-read the store if another process has added records since it was last read (its
        size moved past what this run wrote). Failed records are not reused (a rerun retries
        them); a later record of the same key wins."""
        size = self.store.size()
        if size == self._read_size:
            return
        self.stored = {record_key(r): r for r in self.store.records() if r.get("status", "ok") != "failed"}
        self._read_size = size

    def run(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for seed in self.plan.seeds:
            out.extend(self.run_seed(seed))
        return out

    def base_record(self, learner: Learner, ev: EvalTask, seed: int) -> dict[str, Any]:
        p = self.plan
        return {
            "learner": learner.name, "label": learner.label, "learner_config": learner.config.identity(),
            "suite": p.suite.name, "task": ev.task.name, "task_label": ev.label,
            "task_config": ev.task.config.identity(), "group": ev.group, "value": ev.value,
            "in_distribution": ev.in_distribution, "seed": seed, "n_tasks": p.n_tasks,
            "dtype": str(p.dtype).removeprefix("torch."), "device_type": p.device.type, "device": device_name(p.device),
            "align_to": self.reference.label if self.reference else None,
            "provenance": {"learner": self.catalog.provenance("learner", learner.name),
                           "task": self.catalog.provenance("task", ev.task.name), "core": core_digest()},
            "versions": versions(),
        }

    def pending(self, learner: Learner, seed: int) -> tuple[list[dict[str, Any]], list[tuple[EvalTask, dict[str, Any]]]]:
        """(stored records to reuse, (eval task, new record) pairs still to compute)."""
        reuse, todo = [], []
        for ev in self.plan.suite.evals:
            rec = self.base_record(learner, ev, seed)
            stored = None if self.plan.force else self.stored.get(record_key(rec))
            if stored is not None and self.plan.log_samples and not samples.present(self.store.root, stored):
                stored = None  # stored without its per-task outputs: measured again to log them
            if stored is not None:
                reuse.append(stored)
            else:
                todo.append((ev, rec))
        return reuse, todo

    def run_seed(self, seed: int) -> list[dict[str, Any]]:
        """Fit and score one learner after the other, so each record is stored as soon as it exists.

        Each (learner, seed) is one unit of work under a lock: a concurrent run on the same
        folder waits for it, then finds its records stored instead of computing them again."""
        out, reused = [], 0
        episodes: dict[str, tuple[Episode, Any]] = {}  # eval label -> (tasks, reference outputs), shared by learners
        for spec, learner in zip(self.plan.learners, self.learners):
            stored, todo = self.pending(learner, seed)
            if todo:
                with self.store.unit_lock(unit_key(self.plan.suite.name, learner.label, seed, self.plan.n_tasks)):
                    self.refresh()
                    stored, todo = self.pending(learner, seed)
                    out.extend(self.compute(spec, seed, todo, episodes))
            out.extend(stored)
            reused += len(stored)
        if reused:
            self.progress(f"seed {seed}: reused {reused} records stored in {self.store.path} (--force recomputes)")
        return out

    def compute(self, spec: LearnerSpec, seed: int, todo: list[tuple[EvalTask, dict[str, Any]]],
                episodes: dict[str, tuple[Episode, Any]]) -> list[dict[str, Any]]:
        """Fit a fresh learner for `seed` and score it on each pending eval task; a failure is
        stored as a failed record and does not stop the others."""
        if not todo:
            return []
        learner = spec.build(self.catalog)  # fresh for every seed: nothing fitted leaks across seeds
        fit_seconds, fault, info = 0.0, None, {}
        try:
            with self.watch(learner, "fit", f"seed {seed}"):
                fit_seconds = self.fit(learner, seed)
            info = learner_info(learner)
            guard(learner)
        except BaseException as err:
            if not learner_fault(err):
                raise
            fault = err
        out = []
        for ev, rec in todo:
            if fault is not None:
                rec.update(self.failed(rec, "fit", fault))
            else:
                rec.update(self.score(learner, ev, seed, episodes), fit_seconds=fit_seconds, **info)
            arrays = rec.pop("_samples", None)
            if arrays is not None:
                rec["samples"] = samples.write(self.store.root, rec, arrays)
            rec.update(git_commit=git_commit(), git_dirty=git_dirty(),
                       created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            before, after = self.store.append(rec)
            self.stored[record_key(rec)] = rec
            if before == self._read_size:  # nobody else wrote since the last read: still up to date
                self._read_size = after
            out.append(rec)
            self.report(rec)
        return out

    def score(self, learner: Learner, ev: EvalTask, seed: int, episodes: dict[str, tuple[Episode, Any]]) -> dict[str, Any]:
        """The measured part of one record: the reference's outputs and the tasks first (a
        failure there is the reference's or the task's, stage named), then the learner's."""
        rec = {"label": learner.label, "suite": self.plan.suite.name, "task_label": ev.label, "seed": seed}
        try:
            if ev.label not in episodes:
                episodes[ev.label] = self.eval_tasks(ev, seed)
        except BaseException as err:
            if not learner_fault(err):
                raise
            return self.failed(rec, "reference" if self.reference is not None else "tasks", err)
        episode, ref = episodes[ev.label]
        try:
            with self.watch(learner, "predict", f"{ev.label}, seed {seed}"):
                return self.measure(learner, episode, ref, ev.prefix_curve, ev.task)
        except BaseException as err:
            if not learner_fault(err):
                raise
            return self.failed(rec, "predict", err)

    def watch(self, learner: Learner, stage: str, where: str):
        """The block as one watched learner call (`iclbench.watchdog`)."""
        return watched(f"{learner.label} in {stage} on {self.plan.suite.name}/{where}", self.plan.learner_timeout,
                       self.progress)

    def failed(self, rec: dict[str, Any], stage: str, err: BaseException) -> dict[str, Any]:
        where = f"{rec['label']} on {rec['suite']}/{rec['task_label']}, seed {rec['seed']}"
        self.failures.append(f"{where}: {stage} failed: {error_text(err)}")
        return {"status": "failed", "stage": stage, "error": error_text(err), "metrics": {}}

    def report(self, rec: dict[str, Any]) -> None:
        where = f"seed {rec['seed']} {rec['label']} on {rec['task_label']}"
        if rec["status"] == "failed":
            self.progress(f"{where}: FAILED in {rec['stage']}: {rec['error']}")
            return
        if rec["status"] == "diverged":
            warnings.warn(f"{rec['label']} diverged on {rec['suite']}/{rec['task_label']}, seed {rec['seed']}: "
                          f"{rec['n_nonfinite']} of {rec['n_tasks']} predictions are not finite", stacklevel=2)
        self.progress(f"{where}: loss {rec['metrics']['loss']:.4g}")

    def eval_tasks(self, ev: EvalTask, seed: int) -> tuple[Episode, Any]:
        """The evaluation tasks of `ev` for `seed` (own stream) and the reference learner's outputs on them."""
        p = self.plan
        gen = generator(p.device, seed, "eval", p.suite.name, ev.label)
        episode = ev.task.sample(p.n_tasks, generator=gen, device=p.device).to(dtype=p.dtype)
        bad = episode.nonfinite()
        if bad:  # a sampler bug: every learner's loss on these tasks would be NaN, so stop here
            fields = ", ".join(f"{n} in {name}" for name, n in bad.items())
            raise ValueError(f"task {ev.label!r} ({ev.task.label}) drew non-finite values for seed {seed}: {fields} "
                             f"of {p.n_tasks} tasks")
        if self.reference is None:
            return episode, None
        if self.reference_seed != seed:
            self.reference = self.plan.align_to.build(self.catalog)
            with self.watch(self.reference, "fit", f"seed {seed} (the reference)"):
                self.fit(self.reference, seed)
            self.reference_seed = seed
        with self.watch(self.reference, "predict", f"{ev.label}, seed {seed} (the reference)"):
            ref = self.reference_outputs(episode)
        if ref is not None and not all(bool(torch.isfinite(t).all()) for t in ref[:2]):
            if not self.reference_warned:
                warnings.warn(f"the reference {self.reference.label!r} diverged on {p.suite.name}/{ev.label}, seed "
                              f"{seed}: comparisons against it are not computed where it diverged", stacklevel=2)
                self.reference_warned = True
            ref = "diverged"
        return episode, ref

    def fit(self, learner: Learner, seed: int) -> float:
        start = time.perf_counter()
        fit_for_evaluation(learner, self.plan.suite.train, seed, self.plan.device)
        return time.perf_counter() - start

    def reference_outputs(self, episode: Episode) -> tuple | None:
        """The reference's predictions, sensitivities and, on a sequence, its (B, T, D) predictions
        at every position and its sensitivities at a few (t -> (B, D, D))."""
        if self.reference is None:
            return None
        bs, reference = self.plan.batch_size, guard(self.reference, f"the reference {self.reference.label!r}")
        positions = position_sens = None
        if is_sequence(episode):
            positions = position_predictions(reference, episode, lambda e: predict_chunked(reference, e, bs)).clone()
            position_sens = {t: v.clone() for t, v in position_sensitivities(reference, episode, self.sensitivity).items()}
        return (predict_chunked(reference, episode, bs).clone(), sensitivities_chunked(reference, episode, bs).clone(),
                positions, position_sens)

    def sensitivity(self, learner: Learner, episode: Episode) -> torch.Tensor:
        """(B, dy, dx) query sensitivities in this plan's batches."""
        return sensitivities_chunked(learner, episode, self.plan.batch_size)

    def measure(self, learner: Learner, episode: Episode, ref, prefix: bool = False, task: Task | None = None) -> dict[str, Any]:
        """Loss (and alignment, paired loss difference to the reference) of checked predictions;
        with `prefix`, the error against context length too; on a sequence, the loss at every
        position and its mean (`position_loss`); and the task's own scores (`Task.scores`)."""
        start = time.perf_counter()
        pred = predict_chunked(learner, episode, self.plan.batch_size)
        if episode.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        losses = task_losses(pred, episode.query_y)  # (B,)
        nonfinite = int(((~torch.isfinite(pred)).any(dim=-1) | ~torch.isfinite(losses)).sum())  # an overflowing loss too
        loss, ci = mean_ci95(losses)
        metrics: dict[str, float] = {"loss": loss, "loss_ci95": ci, **robust_loss(losses)}
        for name, values in (task.scores(pred, episode) if task is not None else {}).items():  # (B,) each
            metrics[name], metrics[f"{name}_ci95"] = mean_ci95(values)
        status: dict[str, Any] = {"status": "diverged", "n_nonfinite": nonfinite} if nonfinite else {"status": "ok"}
        undefined: dict[str, str] = {}
        if ref == "diverged":
            status["reference_status"], ref = "diverged", None
        if ref is not None:
            ref_losses = task_losses(ref[0], episode.query_y)  # (B,)
            diff = losses.double() - ref_losses.double()  # (B,) paired on the same tasks
            metrics["loss_diff"], metrics["loss_diff_ci95"] = mean_ci95(diff)
            sens = sensitivities_chunked(learner, episode, self.plan.batch_size)
            values = {**alignment(pred, ref[0], sens, ref[1]), "sens_cos": cosine_against(sens, ref[1])}  # each (B,)
            for name, v in values.items():
                stat = defined_mean_ci95(v) if name == "sens_cos" else mean_ci95(v)
                if stat is None:
                    undefined[name] = "the reference's sensitivities are zero on every task"
                else:
                    metrics[name], metrics[f"{name}_ci95"] = stat
        if prefix:
            status["prefix_curve"] = prefix_curve(learner, episode, lambda e: predict_chunked(learner, e, self.plan.batch_size),
                                                  task.scores if task is not None else None)
        if is_sequence(episode):  # the loss at every position, its mean over positions, paired to the reference's
            fields, more, missing = score_positions(learner, episode, ref, lambda e: predict_chunked(learner, e, self.plan.batch_size),
                                                    self.sensitivity)
            status.update(fields)
            metrics.update(more)
            undefined.update(missing)
        if undefined:
            status["undefined"] = undefined
        if self.plan.log_samples:
            status["_samples"] = {"predictions": pred, "targets": episode.query_y, "losses": losses,
                                  **({"reference_losses": ref_losses} if ref is not None else {})}
        return {**status, "metrics": metrics, "seconds": seconds}
