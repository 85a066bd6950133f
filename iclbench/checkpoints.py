"""Checkpoint cache for meta-trained learners, keyed by a hash of everything that shapes them.

The key covers the learner config (training config included), the training task config,
the training seed and the iclbench version. A finished entry is reused without training; an
unfinished one is resumed. Files are written atomically and loaded with weights_only=True.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

import iclbench

_CACHE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("iclbench_cache_dir", default=None)


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


class Checkpoint:
    """One cache entry: `<dir>/<key>.pt`, holding a dict of tensors and plain values."""

    def __init__(self, directory: Path, key: str) -> None:
        self.path = directory / f"{key}.pt"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)  # atomic: a kill never leaves a torn checkpoint
