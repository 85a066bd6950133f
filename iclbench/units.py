"""Units of work: one (learner, suite, seed) evaluation, planned by the driver, run anywhere.

The driver splits each plan into units and leaves out what `results.jsonl` already holds. A
unit carries its one-learner, one-seed plan as pickled bytes, opened only once the worker has
loaded the `--plugin` files (shipped as their bytes), whose classes the plan may name. It
runs as an ordinary `Evaluation` whose store is the unit's own file, `OUT/.units/KEY.jsonl`,
and trains through the shared checkpoint cache: a unit run again after its worker died
reuses the records it finished and resumes its training from the last checkpoint.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iclbench.catalog import PluginSource, catalog_from_sources
from iclbench.runner import Evaluation, Plan
from iclbench.store import ResultStore, git_commit, record_key, unit_key

if TYPE_CHECKING:
    from iclbench.catalog import Catalog

UNITS_FOLDER = ".units"


@dataclass(frozen=True)
class Unit:
    """What a worker needs to evaluate one learner on one suite for one seed."""

    key: str  # a hash of the unit's record keys: names its record file
    label: str
    suite: str
    seed: int
    plan: bytes  # a pickled Plan of this learner, this seed and the eval tasks still to score


@dataclass(frozen=True)
class Shipment:
    """What every unit of a run shares: the plugin files, the folders, how to train."""

    plugins: tuple[PluginSource, ...]
    cache: str | None  # the checkpoint cache, on a path every worker shares
    units: str  # the folder of the units' record files
    compile: bool = False
    threads: int = 1
    device: str | None = None  # the device units use (None: the plan's), e.g. `cuda`: the GPU a scheduler assigned


@dataclass
class Slot:
    """The driver's view of one (learner, seed) of a plan: the unit to run (None when every
    record is stored), the records it will produce, still without numbers, and those stored.
    `twin`: an earlier slot that computes the very same records (two runs listing one learner)."""

    evaluation: Evaluation
    unit: Unit | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    twin: int | None = None


@dataclass
class UnitResult:
    """A unit's records, in the suite's order, and a line per failed measurement among them."""

    records: list[dict[str, Any]]
    failures: list[str]


def units_folder(store: ResultStore) -> Path:
    """Where the units of a run into `store` write their records: beside results.jsonl."""
    return store.root.resolve() / UNITS_FOLDER


def plan_units(catalog: "Catalog", plan: Plan, store: ResultStore, progress=None) -> list[Slot]:
    """One slot per (seed, learner) of `plan`, in the order `Evaluation.run` goes through them."""
    evaluation = Evaluation(catalog, plan, store, progress=progress)
    slots = []
    for seed in plan.seeds:
        for spec, learner in zip(plan.learners, evaluation.learners):
            stored, todo = evaluation.pending(learner, seed)
            unit = None
            if todo:
                labels = {ev.label for ev, _ in todo}
                suite = replace(plan.suite, evals=[ev for ev in plan.suite.evals if ev.label in labels])
                key = unit_key(*sorted(record_key(rec) for _, rec in todo))
                unit = Unit(key, learner.label, plan.suite.name, seed,
                            pickle.dumps(replace(plan, learners=[spec], seeds=[seed], suite=suite, force=False)))
                if plan.force:  # recompute: records of an earlier, unmerged try are not reused either
                    (units_folder(store) / f"{key}.jsonl").unlink(missing_ok=True)
            slots.append(Slot(evaluation, unit, [rec for _, rec in todo], stored))
    return slots


def pair_twins(slots: list[Slot]) -> list[Slot]:
    """`slots` with each unit that repeats an earlier one's records left to that one, so a
    measurement listed twice is computed and stored once (as the local executor does)."""
    first: dict[str, int] = {}
    for i, slot in enumerate(slots):
        if slot.unit is not None:
            if slot.unit.key in first:
                slot.twin, slot.unit = first[slot.unit.key], None
            else:
                first[slot.unit.key] = i
    return slots


_CATALOGS: dict[tuple[PluginSource, ...], "Catalog"] = {}


def run_unit(unit: Unit, shipment: Shipment) -> UnitResult:
    """Evaluate `unit` in this (worker) process: its records, also in its own file."""
    import torch

    from iclbench.checkpoints import cache_dir
    from iclbench.training import compiled_training

    os.environ["TQDM_DISABLE"] = "1"  # bars from many workers would interleave in the driver's log
    torch.set_num_threads(shipment.threads)
    if shipment.plugins not in _CATALOGS:  # once per worker process and set of plugin files
        _CATALOGS[shipment.plugins] = catalog_from_sources(shipment.plugins)
    plan: Plan = pickle.loads(unit.plan)
    if shipment.device is not None:
        plan.device = torch.device(shipment.device)
    store = ResultStore(shipment.units, f"{unit.key}.jsonl")
    with cache_dir(shipment.cache), compiled_training(shipment.compile):
        evaluation = Evaluation(_CATALOGS[shipment.plugins], plan, store)
        records = evaluation.run()
    return UnitResult(records, evaluation.failures)


def lost_unit(slot: Slot, err: BaseException) -> UnitResult:
    """Failed records for a unit that could not be run (its workers kept dying, the cluster
    went away): stored like any failure, so a rerun retries them."""
    cause = getattr(err, "cause", None) or err  # a remote error wraps the worker's exception
    records, before = [], len(slot.evaluation.failures)
    for rec in slot.pending:
        records.append({**rec, **slot.evaluation.failed(rec, "execution", cause), "git_commit": git_commit(),
                        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return UnitResult(records, slot.evaluation.failures[before:])
