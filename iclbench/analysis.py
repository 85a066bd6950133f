"""Analyses: studies of fitted learners beyond the leaderboard loss (interpolation, repeated
application, weight pictures, ...). Plugins register `Analysis` subclasses; `iclbench analyze`
runs one per seed, appends its JSON result to `analyses.jsonl` and saves its figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from iclbench.component import Configurable
from iclbench.config import StrictConfig, parse_spec
from iclbench.episode import Episode
from iclbench.filenames import safe_stem
from iclbench.isolation import guard
from iclbench.learner import Learner
from iclbench.seeding import generator
from iclbench.suite import EvalTask, Suite


class AnalysisConfig(StrictConfig):
    """Base of every analysis's config."""


@dataclass
class AnalysisContext:
    """What an analysis may use: fitted learners and evaluation tasks, seeded as `evaluate` does,
    so trained learners come from the same checkpoint cache and tasks match the leaderboard's."""

    catalog: Any
    suite: Suite
    seed: int
    device: torch.device
    n_tasks: int
    out: Path
    dtype: torch.dtype = torch.float32

    def learner(self, spec: str) -> Learner:
        """Build `name[key=value,...]` and fit it on the suite's training distribution, exactly
        as `evaluate` does; its predictions then each see a private copy of their tasks
        (`iclbench.isolation`), so no learner of an analysis changes what the next one sees."""
        from iclbench.runner import fit_for_evaluation

        name, overrides = parse_spec(spec)
        learner = self.catalog.learners[name](overrides)
        fit_for_evaluation(learner, self.suite.train, self.seed, self.device)
        return guard(learner)

    def eval_task(self, label: str | None = None) -> EvalTask:
        """The named evaluation task, or the first in-distribution one."""
        evals = self.suite.evals
        if label is None:
            return next((e for e in evals if e.in_distribution), evals[0])
        for e in evals:
            if e.label == label:
                return e
        raise LookupError(f"suite {self.suite.name!r} has no eval task {label!r}")

    def episode(self, ev: EvalTask | None = None) -> Episode:
        ev = ev or self.eval_task()
        gen = generator(self.device, self.seed, "eval", self.suite.name, ev.label)
        return ev.task.sample(self.n_tasks, generator=gen, device=self.device).to(dtype=self.dtype)

    def figure_path(self, name: str) -> Path:
        """`OUT/figures/<name>-seed<seed>.png`, the name reduced to safe file-name characters."""
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / f"{safe_stem(name, strip='._')}-seed{self.seed}.png"


class Analysis(Configurable):
    """A study run by `iclbench analyze NAME`; `run` returns JSON-able results."""

    Config: ClassVar[type[AnalysisConfig]] = AnalysisConfig
    kind: ClassVar[str] = "analysis"

    def run(self, ctx: AnalysisContext) -> dict[str, Any]:
        raise NotImplementedError(f"analysis {self.name!r} does not implement run()")


def run_analysis(analysis: Analysis, ctx: AnalysisContext) -> dict[str, Any]:
    """Run `analysis` in `ctx` and return its analyses.jsonl record: which analysis with which
    config on which suite, seed, tasks and device, the code that ran it, and its result. The one
    schema both `iclbench analyze` and `reproduce` write (`record_schema.AnalysisRecord`)."""
    import time

    from iclbench.codehash import git_dirty
    from iclbench.seeding import device_name
    from iclbench.store import git_commit, versions

    start = time.perf_counter()
    result = analysis.run(ctx)
    return {"analysis": analysis.name, "config": analysis.config.model_dump(), "suite": ctx.suite.name,
            "seed": ctx.seed, "n_tasks": ctx.n_tasks, "device_type": ctx.device.type, "device": device_name(ctx.device),
            "versions": versions(), "git_commit": git_commit(), "git_dirty": git_dirty(), "result": result,
            "seconds": round(time.perf_counter() - start, 3)}
