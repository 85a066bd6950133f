"""Checkpoint cache for meta-trained learners, keyed by a hash of everything that shapes them.

The key covers the learner config without its execution-only fields (training config
included), the training task config, the training seed and the iclbench version. A finished
entry is reused without training; an unfinished one is resumed. Files are written atomically
under unique temporary names and loaded with weights_only=True; an unreadable file is
discarded with a warning, so its model is retrained. A training holds a lock on
`<key>.pt.lock`, so processes sharing a cache train each key once.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import iclbench
from iclbench.locks import atomic_write, file_lock

_CACHE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("iclbench_cache_dir", default=None)

STATE_KEYS = frozenset({"model", "optimizer", "step", "curve", "generator", "done", "seconds"})
"""What every saved training state holds (see `iclbench.training`)."""



@contextlib.contextmanager
def cache_dir(path: str | Path | None) -> Iterator[None]:
    """Within this block, trained learners cache their checkpoints under `path` (None: no cache)."""
    token = _CACHE_DIR.set(None if path is None else Path(path))
    try:
        yield
    finally:
        _CACHE_DIR.reset(token)


def current_cache_dir() -> Path | None:
    """The active cache folder: the innermost `cache_dir(...)`, else $ICLBENCH_CACHE, else none."""
    path = _CACHE_DIR.get()
    if path is None and os.environ.get("ICLBENCH_CACHE"):
        path = Path(os.environ["ICLBENCH_CACHE"])
    return path


def cache_key(**parts: Any) -> str:
    """A short stable hash of JSON-able `parts` plus the iclbench version."""
    text = json.dumps({**parts, "iclbench": iclbench.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def training_checkpoint(learner: Any, task: Any, generator: Any) -> "Checkpoint | None":
    """The cache entry of `learner` meta-trained on `task` from `generator`'s seed, in the active
    cache folder; None without one. The key covers learner config, task config, seed and version."""
    folder = current_cache_dir()
    if folder is None:
        return None
    return Checkpoint(folder, cache_key(learner=learner.name, config=learner.config.identity(), task=task.name,
                                        task_config=task.config.model_dump(), seed=generator.initial_seed()))


class Checkpoint:
    """One cache entry: `<dir>/<key>.pt`, holding a dict of tensors and plain values."""

    def __init__(self, directory: Path, key: str) -> None:
        self.path = Path(directory) / f"{key}.pt"
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it is unreadable (then it is discarded)."""
        if not self.path.exists():
            return None
        # A corrupt file makes torch.load raise RuntimeError, EOFError, UnpicklingError, OSError,
        # ValueError, even AssertionError: all mean the same here, and torch's own advice (to
        # load with weights_only=False) is wrong for a cache file, so neither reaches the user.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:
            self.discard(f"is unreadable ({type(err).__name__})")
            return None
        if not isinstance(state, dict) or not STATE_KEYS <= state.keys():
            self.discard("is not a training state")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` under a unique temporary name, then rename it into place: concurrent
        writers never clash and a kill never leaves a torn checkpoint."""
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))

    def discard(self, reason: str) -> None:
        """Warn that this checkpoint `reason` (e.g. "is unreadable") and delete it."""
        warnings.warn(f"checkpoint {self.path} {reason}; discarded, the model will be retrained", stacklevel=3)
        self.path.unlink(missing_ok=True)

    def lock(self, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on this entry across processes; `on_wait()` is called if another holds it."""
        return file_lock(self.lock_path, on_wait=on_wait)
