"""iclbench: a benchmark harness for in-context learners on synthetic regression tasks.

The public plugin contract: subclass `Learner` / `Task` (each with a pydantic `Config`),
build batches as `Episode`s, and register them with `@hookimpl` functions; a learner that
trains its own model does so through `meta_train` (with a `TrainConfig` and a
`training_checkpoint`), as the built-in Transformers do. The Python API:
`evaluate`, `leaderboard` and `records` (see `iclbench.api`). The names load
on first use, so `iclbench --help` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from iclbench import mkl as _mkl

_mkl.request()  # before any matrix product: MKL's alignment-independent kernels (iclbench.mkl)

__version__ = "0.1.0"

_EXPORTS = {
    "Episode": "iclbench.episode",
    "Learner": "iclbench.learner",
    "LearnerConfig": "iclbench.learner",
    "Task": "iclbench.task",
    "TaskConfig": "iclbench.task",
    "hookimpl": "iclbench.hookspecs",
    "meta_train": "iclbench.training",  # train your own nn.Module as the built-in Transformers train
    "TrainConfig": "iclbench.training",
    "TrainResult": "iclbench.training",
    "training_checkpoint": "iclbench.checkpoints",
    "Curriculum": "iclbench.curriculum",  # a training task that follows the step (meta_train's on_step)
    "evaluate": "iclbench.api",  # the Python API (iclbench.api): evaluate, leaderboard, records
    "leaderboard": "iclbench.api",
    "records": "iclbench.api",
}

__all__ = [*_EXPORTS, "__version__"]


def lazy_exports(namespace: dict[str, Any], exports: dict[str, str]):
    """A module `__getattr__` that imports each name of `exports` (name -> module) on first use
    and keeps it in `namespace` (the module's globals), so later lookups skip it."""
    def __getattr__(name: str) -> Any:
        if name in exports:
            namespace[name] = value = getattr(importlib.import_module(exports[name]), name)
            return value
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_exports(globals(), _EXPORTS)
