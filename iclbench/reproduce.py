"""`iclbench reproduce NAME`: rerun a paper's experiments and publish them as a leaderboard.

A reproduction is a plugin: a TOML spec (data: which learners on which suites, which
analyses, the training budgets) and a `findings` method that checks the paper's claims on
the stored numbers. Everything in the output folder is written by `publish`, from the
records alone, so the published files can always be regenerated and compared.
"""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iclbench.config import merge, parse_spec
from iclbench.curve_spec import CurveFigures
from iclbench.metrics import across_seeds
from iclbench.reproduction_meta import (META_FILE, ReproductionFileError, ReproductionMeta,  # noqa: F401  (re-exported)
                                        read_meta, reproduction_name, write_meta)
from iclbench.store import ANALYSES_FILE, RESULTS_FILE, read_records

if TYPE_CHECKING:
    from iclbench.executors import Executor
    from iclbench.runner import LearnerSpec


class Budget(BaseModel):
    """How long every trained learner trains, and on how many tasks everything is scored.

    `train` gives a learner (keyed by its spec string, as written in the runs) its own training
    protocol: the paper trains untied deep models, copying and sine models longer than one-layer ones.
    `config` gives it other config fields, such as a model size that only a GPU budget affords.
    """

    model_config = ConfigDict(extra="forbid")
    train_steps: int = Field(ge=1, description="training steps of every trainable learner not listed in `train`")
    n_tasks: int = Field(ge=2, description="evaluation tasks per (task, seed)")
    batch_size: int = Field(20000, ge=1, description="tasks per predict call (bounds a large model's memory)")
    train: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                             description="per-learner training overrides, e.g. steps, grad_clip")
    config: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                              description="per-learner config overrides besides train, e.g. layers")

    def train_config(self, spec: str) -> dict[str, Any]:
        """The training overrides this budget gives learner `spec`."""
        return {"steps": self.train_steps, **self.train.get(spec, {})}


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suite: str
    learners: list[str]
    align_to: str | None = None


class AnalysisRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    suite: str = "linear"
    config: dict[str, Any] = Field(default_factory=dict)


class Deviation(BaseModel):
    """One place where the defaults differ from the paper's text or its reference code, and why."""

    model_config = ConfigDict(extra="forbid")
    what: str
    paper: str = Field(description="the paper's text or its reference code")
    ours: str
    why: str


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    budgets: dict[str, Budget]
    runs: list[Run]
    analyses: list[AnalysisRun] = Field(default_factory=list)
    deviations: list[Deviation] = Field(default_factory=list)
    curves: CurveFigures = Field(default_factory=CurveFigures)

    @model_validator(mode="after")
    def _budgeted_learners_run(self):
        used = {s for run in self.runs for s in run.learners + [run.align_to] if s}
        for name, budget in self.budgets.items():
            for table in ("train", "config"):
                for spec in getattr(budget, table):
                    if spec not in used:
                        raise ValueError(f"budgets.{name}.{table} names {spec!r}, which no run lists")
        return self


@dataclass
class Finding:
    """One claim of the paper, our numbers, whether it holds within the stated tolerance (True,
    False, or None: inconclusive, `iclbench.verdicts`), and for a claim that does not hold or
    is inconclusive, why (published beside it, never hidden)."""

    claim: str
    ours: str
    holds: bool | None
    why: str = ""


@dataclass
class Paired:
    """A learner's loss minus a reference's on the same tasks, over seeds: `diff` ± `ci`
    (Student t over seed means; one seed keeps its paired CI over tasks), and relative to the
    reference's mean loss."""

    diff: float
    ci: float
    reference_loss: float
    seeds: int

    @property
    def rel(self) -> float:
        return self.diff / self.reference_loss

    @property
    def rel_ci(self) -> float:
        return self.ci / self.reference_loss

    def text(self) -> str:
        return f"Δ {self.diff:+.4f} ± {self.ci:.4f} ({self.rel:+.1%} ± {self.rel_ci:.1%} of {self.reference_loss:.4f})"


class Reproduction:
    """Subclass with `name`, `spec_file` and `findings`; register with `register_reproductions`."""

    name: ClassVar[str]
    spec_file: ClassVar[Any]  # a Path or importlib.resources Traversable

    def spec(self) -> Spec:
        return Spec(**tomllib.loads(self.spec_file.read_text()))

    def findings(self, results: "Results") -> list[Finding]:
        return []

    def figures(self, results: "Results", folder: Path) -> list[Path]:
        """Figures of this reproduction's own sweeps, written into `folder` from the records;
        the PNGs written (publish keeps them and lists them)."""
        return []

    @staticmethod
    def check(claims: "list[tuple[str, Callable[[Results], Finding]]]", results: "Results") -> list[Finding]:
        """Each (claim, check) checked on `results`; a check whose records are missing gives a
        Finding that says so (shown, never silently dropped), undecided rather than failed."""
        out = []
        for claim, check in claims:
            try:
                found = check(results)
            except LookupError as err:
                found = Finding("", f"missing: {err}", None, "not decided: the experiment has not been run")
            out.append(Finding(claim, found.ours, found.holds, found.why))
        return out


def budgeted(spec: str, budget: Budget, catalog) -> "LearnerSpec":
    """`spec` under `budget`: its `config` overrides, and for learners that train, its
    training settings; the spec's own settings win over the budget's."""
    from iclbench.runner import LearnerSpec

    name, overrides = parse_spec(spec)
    overrides = merge(budget.config.get(spec, {}), overrides)
    if catalog.learners[name].trains:
        overrides = merge({"train": budget.train_config(spec)}, overrides)
    return LearnerSpec(name, overrides)


def with_budget(spec: str, budget: Budget, catalog) -> str:
    """The label of `spec` under `budget` (`budgeted`)."""
    return budgeted(spec, budget, catalog).prototype(catalog).label


class Results:
    """Stored records and analyses of a reproduction, looked up by the spec's learner strings."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = read_meta(folder)
        self.records = read_records(folder / RESULTS_FILE)
        path = folder / ANALYSES_FILE
        self.analyses = read_records(path) if path.exists() else []
        self.records, self.analyses = self.in_spec(self.records, self.analyses)

    @classmethod
    def from_records(cls, records: list[dict[str, Any]], analyses: list[dict[str, Any]] = (),
                     meta: dict[str, Any] | None = None) -> "Results":
        """The same lookups over records held in memory (a notebook, a test), `meta` as a
        reproduction.json would hold it (checked against its schema)."""
        self = cls.__new__(cls)
        self.folder = None
        self.meta = {**ReproductionMeta.model_validate(meta or {}).model_dump(exclude_unset=True),
                     "labels": dict((meta or {}).get("labels", {}))}
        self.records, self.analyses = self.in_spec(list(records), list(analyses))
        return self

    def in_spec(self, records: list[dict[str, Any]], analyses: list[dict[str, Any]]) -> tuple[list, list]:
        """Only the records of the spec's runs and analyses as of the last `reproduce` call (named
        in reproduction.json): a record left from a run since removed from the spec is never
        taken for a current one. A folder written before the runs were recorded keeps everything."""
        if "runs" in self.meta:
            runs = {(run["suite"], run["align_to"], label) for run in self.meta["runs"] for label in run["learners"]}
            records = [r for r in records if (r["suite"], r.get("align_to"), r["label"]) in runs]
        if "analyses" in self.meta:
            key = lambda a: (a["analysis"], json.dumps(a["config"], sort_keys=True))  # noqa: E731
            wanted = {key(a) for a in self.meta["analyses"]}
            analyses = [a for a in analyses if key(a) in wanted]
        return records, analyses

    def label(self, spec: str) -> str:
        return self.meta["labels"].get(spec, spec)

    def records_by_seed(self, spec: str, suite: str, task: str | None = None,
                        align_to: str | None = None) -> dict[int, dict[str, Any]]:
        """The latest finished record per seed for `spec` on `suite`'s eval task `task` (default:
        the task named like the suite); failed records hold no number and are left out."""
        label, task = self.label(spec), task or suite
        ref = None if align_to is None else self.label(align_to)
        out = {}
        for r in self.records:
            if (r["label"], r["suite"], r["task_label"]) == (label, suite, task) and r.get("status", "ok") != "failed":
                if align_to is None or r.get("align_to") == ref:
                    out[r["seed"]] = r
        return dict(sorted(out.items()))

    def by_seed(self, spec: str, suite: str, task: str | None = None, metric: str = "loss",
                align_to: str | None = None) -> dict[int, float]:
        """seed -> `metric` for `spec` on `suite`'s eval task `task`."""
        out = {s: r["metrics"][metric] for s, r in self.records_by_seed(spec, suite, task, align_to).items()
               if metric in r["metrics"]}
        if not out:
            ref = None if align_to is None else self.label(align_to)
            where = f"{suite}/{task or suite}" + (f" aligned to {ref!r}" if ref else "")
            raise LookupError(f"no {metric!r} for {self.label(spec)!r} on {where}")
        return out

    def values(self, spec: str, suite: str, task: str | None = None, metric: str = "loss",
               align_to: str | None = None) -> list[float]:
        """One value per seed, in seed order."""
        return list(self.by_seed(spec, suite, task, metric, align_to).values())

    def paired(self, spec: str, reference: str, suite: str, task: str | None = None,
               seeds: list[int] | None = None, metric: str = "loss") -> Paired:
        """`spec`'s `metric` minus `reference`'s on the same tasks (records of `spec` aligned to
        `reference`), over `seeds` (default: every seed with a record). `metric`: "loss", or
        "position_loss" (a sequence's loss averaged over positions). The reference's loss is its
        own record's where it has one, else the learner's loss minus the difference."""
        recs = self.records_by_seed(spec, suite, task, align_to=reference)
        d = f"{metric}_diff"
        recs = {s: r for s, r in recs.items() if d in r["metrics"] and (seeds is None or s in seeds)}
        if not recs:
            raise LookupError(f"no paired {metric} difference of {self.label(spec)!r} to {self.label(reference)!r} "
                              f"on {suite}/{task or suite}")
        diffs = [r["metrics"][d] for r in recs.values()]
        diff, ci = across_seeds(diffs, [r["metrics"][f"{d}_ci95"] for r in recs.values()])
        own = self.records_by_seed(reference, suite, task)  # the reference's own records, on the same tasks
        ref_losses = [own[s]["metrics"][metric] if metric in (own.get(s) or {}).get("metrics", {})
                      else r["metrics"][metric] - r["metrics"][d] for s, r in recs.items()]  # loss - Δ cancels badly
        return Paired(diff, ci, sum(ref_losses) / len(ref_losses), len(recs))  # when the learner's loss explodes

    def prefix_error(self, spec: str, suite: str, task: str | None = None) -> list[float]:
        """`spec`'s error against context length on `suite`'s eval task `task` (k = 1..N, relative
        to the zero predictor), averaged over seeds."""
        curves = [r["prefix_curve"]["error"] for r in self.records_by_seed(spec, suite, task).values()
                  if r.get("prefix_curve")]
        if not curves:
            raise LookupError(f"no error-against-context curve for {self.label(spec)!r} on {suite}/{task or suite}")
        return [sum(c[k] for c in curves) / len(curves) for k in range(len(curves[0]))]

    def curves(self, spec: str, suite: str) -> dict[int, list[dict[str, float]]]:
        """seed -> the training curve (held-out rows) stored with `spec`'s records on `suite`."""
        return {s: r["fit_info"]["curve"] for s, r in self.records_by_seed(spec, suite).items()
                if (r.get("fit_info") or {}).get("curve")}

    def mean(self, spec: str, suite: str, task: str | None = None, metric: str = "loss",
             align_to: str | None = None) -> float:
        v = self.values(spec, suite, task, metric, align_to)
        return sum(v) / len(v)

    def analysis(self, name: str) -> list[dict[str, Any]]:
        return [a["result"] for a in self.analyses if a["analysis"] == name]


def run_reproduction(repro: Reproduction, catalog, seeds: list[int], device, budget_name: str, out: Path,
                     cache: Path | None, progress, jobs: int = 1, plugin_files: tuple[str, ...] = (),
                     allow_large: bool = False, executor: "Executor | None" = None,
                     log_samples: bool = False) -> list[str]:
    """Evaluate every run and analysis of the spec into `out`, resumably; returns a line per
    measurement that failed (stored as a failed record while the rest went on).

    With `jobs` > 1 on a CPU, the trained learners are first trained `jobs` at a time in
    separate processes (into `cache`), which evaluation then reads. `executor` (default: the
    `local` one with `jobs` and `plugin_files`) runs the evaluations; analyses run here."""
    from iclbench.analysis import AnalysisContext, run_analysis
    from iclbench.checkpoints import cache_dir
    from iclbench.executors import ExecutorOptions
    from iclbench.runner import Plan
    from iclbench.seeding import device_name
    from iclbench.store import ResultStore, git_commit, versions
    from iclbench.training import compiling
    from iclbench.workload import check_plan

    spec = repro.spec()
    if budget_name not in spec.budgets:
        raise ValueError(f"--budget must be one of {', '.join(spec.budgets)}, got {budget_name!r}")
    budget = spec.budgets[budget_name]
    learners = {s: budgeted(s, budget, catalog) for s in sorted({s for run in spec.runs
                                                                  for s in run.learners + [run.align_to] if s})}
    labels = {s: learner.prototype(catalog).label for s, learner in learners.items()}
    analyses = [(a, catalog.analyses[a.name](analysis_config(a.config, budget, catalog))) for a in spec.analyses]
    meta = {"reproduction": repro.name, "budget": budget_name, "budget_values": budget.model_dump(), "seeds": seeds,
            "device": device_name(device), "versions": versions(), "git_commit": git_commit(), "labels": labels,
            "runs": [{"suite": run.suite, "align_to": labels[run.align_to] if run.align_to else None,
                      "learners": [labels[s] for s in run.learners]} for run in spec.runs],
            "analyses": [{"analysis": a.name, "config": analysis.config.model_dump()} for a, analysis in analyses],
            "wall_seconds": None, "earlier_calls_seconds": earlier_calls(out, repro.name, budget_name),
            "execution": {"jobs": jobs, "compile": compiling()}}
    if executor is None:
        executor = catalog.executors["local"](ExecutorOptions(jobs=jobs, plugin_files=tuple(map(str, plugin_files))))
    if executor.name != "local":
        meta["execution"]["executor"] = executor.name
    if executor.options.stack_seeds:
        meta["execution"]["stack_seeds"] = executor.options.stack_seeds
    out.mkdir(parents=True, exist_ok=True)
    write_meta(out, meta)  # first, so a partial run can be published too
    store = ResultStore(out)
    start = time.perf_counter()
    plans = [Plan([learners[s] for s in run.learners], catalog.suites.load(run.suite, catalog),
                  seeds, budget.n_tasks, device, batch_size=budget.batch_size,
                  align_to=learners[run.align_to] if run.align_to else None, log_samples=log_samples)
             for run in spec.runs]
    for plan in plans:
        check_plan(plan, catalog, allow_large=allow_large)
    executor.pretrain(catalog, [(run.suite, [labels[s] for s in run.learners]) for run in spec.runs], seeds, device,
                      cache, progress)
    phases = {"training": time.perf_counter() - start}

    def announce(i: int) -> None:
        progress(f"[{i + 1}/{len(spec.runs)}] suite {spec.runs[i].suite}: {len(spec.runs[i].learners)} learners")

    failures = executor.evaluate(catalog, plans, store, cache, progress, announce).failures
    phases["evaluation"] = time.perf_counter() - start - phases["training"]
    with cache_dir(cache):
        done = {(a["analysis"], a["seed"], json.dumps(a["config"], sort_keys=True)) for a in _analyses(out)}
        for a, analysis in analyses:
            suite = catalog.suites.load(a.suite, catalog)
            for seed in seeds:
                key = (a.name, seed, json.dumps(analysis.config.model_dump(), sort_keys=True))
                if key in done:
                    continue
                progress(f"analysis {analysis.label} seed {seed}")
                ctx = AnalysisContext(catalog, suite, seed, device, budget.n_tasks, out / "figures")
                ResultStore(out, ANALYSES_FILE).append(run_analysis(analysis, ctx))
    wall = time.perf_counter() - start
    phases["analyses"] = wall - phases["training"] - phases["evaluation"]
    write_meta(out, {**meta, "wall_seconds": round(wall, 1), "phase_seconds": {k: round(v, 1) for k, v in phases.items()}})
    return failures


def analysis_config(config: dict[str, Any], budget: Budget, catalog) -> dict[str, Any]:
    """An analysis's config from the spec, its `learner` / `learners` named by their labels under `budget`."""
    return {k: with_budget(v, budget, catalog) if k == "learner" else
            [with_budget(x, budget, catalog) for x in v] if k == "learners" else v for k, v in config.items()}


def earlier_calls(out: Path, name: str, budget_name: str) -> list[float]:
    """Wall seconds of the earlier `reproduce` calls that filled `out` (same reproduction and
    budget), so an interrupted and resumed reproduction reports its whole time."""
    if not (out / META_FILE).exists():
        return []
    old = read_meta(out)
    if (old.get("reproduction"), old.get("budget")) != (name, budget_name):
        return []
    return list(old.get("earlier_calls_seconds", [])) + ([old["wall_seconds"]] if old.get("wall_seconds") else [])


def _analyses(out: Path) -> list[dict[str, Any]]:
    path = out / ANALYSES_FILE
    return read_records(path) if path.exists() else []
