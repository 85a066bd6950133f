"""The public plugin API: everything a learner, task family, analysis, reproduction, executor or
tracker plugin may import from the core, in one place.

    from iclbench.plugin_api import TunedLearner, grid_search, task_losses

Plugins import from here (and from `iclbench` itself: `Learner`, `Task`, `Episode`,
`hookimpl`, `meta_train`, ...), never from the core's other modules, whose layout may change;
a test holds every built-in plugin to that. The names load on first use, so a plugin that
needs only a few of them does not pay for the rest (plotting loads matplotlib, for one).
"""

from __future__ import annotations

from iclbench import lazy_exports

_EXPORTS = {
    # learners: capabilities, placement and tuning on training tasks
    "placed": "iclbench.learner",  # a tensor on the learner's device and dtype
    "TunedLearner": "iclbench.tuning",  # hyperparameters fixed in the config or tuned in fit()
    "grid_search": "iclbench.tuning",
    "lbfgs": "iclbench.tuning",
    "training_sample": "iclbench.tuning",
    # learners that train: the one training loop and its checkpoints
    "TrainConfig": "iclbench.training",
    "TrainResult": "iclbench.training",
    "meta_train": "iclbench.training",
    "compiling": "iclbench.training",
    "Checkpoint": "iclbench.checkpoints",
    "training_checkpoint": "iclbench.checkpoints",
    "Curriculum": "iclbench.curriculum",
    "Tracker": "iclbench.tracking",
    # configs and seeds
    "OPTIONAL": "iclbench.config",
    "parse_spec": "iclbench.config",
    "derive_seed": "iclbench.seeding",
    "generator": "iclbench.seeding",
    # cost models (`Learner.workload`)
    "TAPE_FACTOR": "iclbench.workload",
    "TaskShape": "iclbench.workload",
    "Workload": "iclbench.workload",
    "compute_seconds": "iclbench.workload",
    "episode_bytes": "iclbench.workload",
    # metrics
    "across_seeds": "iclbench.metrics",
    "alignment": "iclbench.metrics",
    "mean_ci95": "iclbench.metrics",
    "sensitivities": "iclbench.metrics",
    "task_losses": "iclbench.metrics",
    "running_means": "iclbench.prefix",
    "trend": "iclbench.convergence",  # was a training's held-out loss still falling at its end
    # sequence tasks: positions and their losses
    "INTERLEAVED": "iclbench.positions",
    "SEQUENCE": "iclbench.positions",
    "is_sequence": "iclbench.positions",
    "position_losses": "iclbench.positions",
    "sequence_episode": "iclbench.positions",
    "states_of": "iclbench.positions",
    # analyses
    "Analysis": "iclbench.analysis",
    "AnalysisConfig": "iclbench.analysis",
    "AnalysisContext": "iclbench.analysis",
    # reproductions and their figures
    "Finding": "iclbench.reproduce",
    "Paired": "iclbench.reproduce",
    "Reproduction": "iclbench.reproduce",
    "Results": "iclbench.reproduce",
    "Verdict": "iclbench.verdicts",  # three-valued verdicts decided on intervals
    "within": "iclbench.verdicts",
    "above": "iclbench.verdicts",
    "below": "iclbench.verdicts",
    "point": "iclbench.verdicts",
    "all_of": "iclbench.verdicts",
    "verdict_label": "iclbench.verdicts",
    "display_records": "iclbench.publish",
    "decorate": "iclbench.plotting",
    "save": "iclbench.plotting",
    "styles": "iclbench.plotting",
    "subplots": "iclbench.plotting",
    "draw_prefix_curves": "iclbench.prefix_plot",
    "prefix_series": "iclbench.prefix_plot",
    # executors: units of work, shipped to workers and merged back in order
    "PluginSource": "iclbench.catalog",
    "default_catalog": "iclbench.catalog",
    "Evaluation": "iclbench.runner",  # one plan's fits and scores, record by record
    "cache_dir": "iclbench.checkpoints",  # trainings within it read and write that checkpoint folder
    "Executor": "iclbench.executors",
    "ExecutorError": "iclbench.executors",
    "OrderedMerge": "iclbench.executors",
    "Outcome": "iclbench.executors",
    "Resources": "iclbench.executors",
    "Shipment": "iclbench.units",
    "lost_unit": "iclbench.units",
    "pair_twins": "iclbench.units",
    "plan_units": "iclbench.units",
    "run_unit": "iclbench.units",
    "units_folder": "iclbench.units",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
