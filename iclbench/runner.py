"""evaluate(learners x suite x seeds) -> result records.

For each seed every learner is fitted on the suite's training distribution, then all
learners are scored on the *same* evaluation tasks (paired comparisons, alignment), each
drawn from its own seeded stream. Records are stored as soon as they exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from iclbench.episode import Episode
from iclbench.learner import Learner
from iclbench.metrics import alignment, mean_ci95, sensitivities, task_losses
from iclbench.pretrain import fit_for_evaluation
from iclbench.registry import Catalog
from iclbench.seeding import device_name, generator
from iclbench.store import ResultStore, git_commit, record_key, versions
from iclbench.suite import EvalTask, Suite


@dataclass(frozen=True)
class LearnerSpec:
    """A learner name with config overrides, e.g. `gd[steps=2]`."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self, catalog: Catalog) -> Learner:
        return catalog.learners[self.name](self.overrides)


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


def predict_chunked(learner: Learner, episode: Episode, batch_size: int) -> torch.Tensor:
    """(B, dy) predictions, `batch_size` tasks at a time to bound memory."""
    with torch.no_grad():
        parts = [learner.predict(episode.slice(i, i + batch_size)) for i in range(0, episode.batch_size, batch_size)]
    return torch.cat(parts)


def sensitivities_chunked(learner: Learner, episode: Episode, batch_size: int) -> torch.Tensor:
    """(B, dy, dx) query sensitivities, chunked like predictions."""
    parts = [sensitivities(learner.predict, episode.slice(i, i + batch_size)) for i in range(0, episode.batch_size, batch_size)]
    return torch.cat(parts)


class Evaluation:
    """One `iclbench evaluate` run; `run()` returns every record it produced or found stored."""

    def __init__(self, catalog: Catalog, plan: Plan, store: ResultStore,
                 progress: Callable[[str], None] | None = None) -> None:
        self.catalog, self.plan, self.store = catalog, plan, store
        self.learners = [s.build(catalog) for s in plan.learners]  # validates every config up front
        self.reference = plan.align_to.build(catalog) if plan.align_to else None  # for its label
        self.progress = progress or (lambda msg: None)
        self.stored = {record_key(r): r for r in store.records()}
        self.reference_seed: int | None = None  # the seed the reference learner is fitted for

    def run(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for seed in self.plan.seeds:
            out.extend(self.run_seed(seed))
        return out

    def base_record(self, learner: Learner, ev: EvalTask, seed: int) -> dict[str, Any]:
        p = self.plan
        return {
            "learner": learner.name, "label": learner.label, "learner_config": learner.config.model_dump(),
            "suite": p.suite.name, "task": ev.task.name, "task_label": ev.label,
            "task_config": ev.task.config.model_dump(), "group": ev.group, "value": ev.value,
            "in_distribution": ev.in_distribution, "seed": seed, "n_tasks": p.n_tasks,
            "dtype": str(p.dtype).removeprefix("torch."), "device_type": p.device.type, "device": device_name(p.device),
            "align_to": self.reference.label if self.reference else None,
            "versions": versions(),
        }

    def run_seed(self, seed: int) -> list[dict[str, Any]]:
        """Fit and score one learner after the other, so each record is stored as soon as it exists."""
        p = self.plan
        out, reused = [], 0
        episodes: dict[str, tuple[Episode, Any]] = {}  # eval label -> (tasks, reference outputs), shared by learners
        for spec, learner in zip(self.plan.learners, self.learners):
            todo = []
            for ev in p.suite.evals:
                rec = self.base_record(learner, ev, seed)
                stored = None if p.force else self.stored.get(record_key(rec))
                if stored is not None:
                    out.append(stored)
                    reused += 1
                else:
                    todo.append((ev, rec))
            if not todo:
                continue
            learner = spec.build(self.catalog)  # fresh for every seed: nothing fitted leaks across seeds
            fit_seconds = self.fit(learner, seed)
            for ev, rec in todo:
                if ev.label not in episodes:
                    episodes[ev.label] = self.eval_tasks(ev, seed)
                episode, ref = episodes[ev.label]
                rec.update(self.measure(learner, episode, ref))
                rec.update(fit_seconds=fit_seconds, git_commit=git_commit(),
                           created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
                self.store.append(rec)
                self.stored[record_key(rec)] = rec
                out.append(rec)
                self.progress(f"seed {seed} {rec['label']} on {ev.label}: loss {rec['metrics']['loss']:.4g}")
        if reused:
            self.progress(f"seed {seed}: reused {reused} records stored in {self.store.path} (--force recomputes)")
        return out

    def eval_tasks(self, ev: EvalTask, seed: int) -> tuple[Episode, Any]:
        """The evaluation tasks of `ev` for `seed` (own stream) and the reference learner's outputs on them."""
        p = self.plan
        gen = generator(p.device, seed, "eval", p.suite.name, ev.label)
        episode = ev.task.sample(p.n_tasks, generator=gen, device=p.device).to(dtype=p.dtype)
        if self.reference is None:
            return episode, None
        if self.reference_seed != seed:
            self.reference = self.plan.align_to.build(self.catalog)
            self.fit(self.reference, seed)
            self.reference_seed = seed
        return episode, self.reference_outputs(episode)

    def fit(self, learner: Learner, seed: int) -> float:
        start = time.perf_counter()
        fit_for_evaluation(learner, self.plan.suite.train, seed, self.plan.device)
        return time.perf_counter() - start

    def reference_outputs(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.reference is None:
            return None
        bs = self.plan.batch_size
        return predict_chunked(self.reference, episode, bs), sensitivities_chunked(self.reference, episode, bs)

    def measure(self, learner: Learner, episode: Episode, ref) -> dict[str, Any]:
        start = time.perf_counter()
        pred = predict_chunked(learner, episode, self.plan.batch_size)
        if episode.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        loss, ci = mean_ci95(task_losses(pred, episode.query_y))
        metrics: dict[str, float] = {"loss": loss, "loss_ci95": ci}
        if ref is not None:
            sens = sensitivities_chunked(learner, episode, self.plan.batch_size)
            for name, values in alignment(pred, ref[0], sens, ref[1]).items():
                metrics[name], metrics[f"{name}_ci95"] = mean_ci95(values)
        return {"metrics": metrics, "seconds": seconds, "hyperparameters": learner.hyperparameters(),
                "fit_info": learner.fit_info()}
