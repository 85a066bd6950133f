"""Checkpoint cache for meta-trained learners, keyed by a hash of everything that shapes them.

The key covers the learner config without its execution-only fields (training config
included), the training task config, the training seed, the iclbench version and the digests
of the code behind them (the core, the learner's and the task's modules: `iclbench.codehash`).
A finished entry is reused without training; an unfinished one is resumed. Files are written atomically
under unique temporary names and loaded with weights_only=True; an unreadable file, or one
whose fields have the wrong types (`STATE_FIELDS`), is discarded with a warning naming it, so
its model is retrained. A training holds a lock on `<key>.pt.lock`, so processes sharing a
cache train each key once.

Using a cache folder (loading or saving an entry) deletes the temporaries its killed writers
left (`iclbench.locks.remove_dead_temporaries`), at most every `SWEEP_EVERY` seconds. A save
that fails for want of space raises an OSError(ENOSPC) naming the file and the free space;
torch reports that as an opaque `[enforce fail at inline_container.cc]` RuntimeError, which is
called a full disk only when the free space is less than the checkpoint needs.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import iclbench
from iclbench import codehash
from iclbench.locks import atomic_write, file_lock, remove_dead_temporaries

_CACHE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("iclbench_cache_dir", default=None)

STATE_KEYS = frozenset({"model", "optimizer", "step", "curve", "generator", "done", "seconds"})
"""What every saved training state holds (see `iclbench.training.checkpoint_state`)."""

SWEEP_EVERY = 10 * 60
"""Seconds between two sweeps of one cache folder for temporaries of dead writers."""

TORCH_WRITE_FAILURE = ("enforce fail", "inline_container", "PytorchStreamWriter", "file write failed")
"""Parts of the RuntimeError messages torch.save gives when it cannot write its file."""

_SWEPT: dict[Path, float] = {}  # cache folder -> when this process last swept it


def _count(v: Any) -> bool:
    """A step count: an int >= 0 (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _seconds(v: Any) -> bool:
    """A duration: a finite number >= 0 (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _rows(v: Any) -> bool:
    """A training curve: a list of rows (dicts)."""
    return isinstance(v, list) and all(isinstance(row, dict) for row in v)


def _tensors(v: Any) -> bool:
    """A module's state_dict: names -> tensors (a module's `_extra_state` may be anything)."""
    return isinstance(v, dict) and all(
        isinstance(k, str) and (isinstance(t, torch.Tensor) or k.endswith("_extra_state")) for k, t in v.items())


def _optimizer(v: Any) -> bool:
    """An optimizer's state_dict: {"state": {...}, "param_groups": [...]}."""
    return isinstance(v, dict) and isinstance(v.get("state"), dict) and isinstance(v.get("param_groups"), list)


def _generator(v: Any) -> bool:
    """A torch.Generator's state: a uint8 tensor."""
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8


STATE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "step": (_count, "an int >= 0"),
    "done": (lambda v: isinstance(v, bool), "a bool"),
    "seconds": (_seconds, "a finite number >= 0"),
    "curve": (_rows, "a list of rows (dicts)"),
    "model": (_tensors, "a dict of tensors (a state_dict)"),
    "optimizer": (_optimizer, "an optimizer state_dict (with state and param_groups)"),
    "generator": (_generator, "a generator state (a uint8 tensor)"),
}
"""Each saved field's check and what it should be, in words."""


def state_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a loaded training state (a missing or wrongly typed field), or None."""
    missing = sorted(STATE_KEYS - state.keys())
    if missing:
        return f"is not a training state (no {', '.join(missing)})"
    for name, (ok, expected) in STATE_FIELDS.items():
        if not ok(state[name]):
            text = repr(state[name])
            return f"has {name} = {text if len(text) <= 60 else text[:57] + '...'}, expected {expected}"
    return None


def sweep(directory: Path) -> None:
    """Delete the checkpoint temporaries of dead writers in `directory`, at most every `SWEEP_EVERY` s."""
    now = time.monotonic()
    if now - _SWEPT.get(directory, -math.inf) < SWEEP_EVERY:
        return
    _SWEPT[directory] = now
    remove_dead_temporaries(directory, ".pt")


def state_bytes(value: Any) -> int:
    """About how many bytes a saved `value` takes: the sum of its tensors' sizes."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(state_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(v) for v in value)
    return 0


def free_bytes(directory: Path) -> int | None:
    """Free bytes on the disk of `directory`, None if that cannot be told."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def size_text(n: float) -> str:
    """`n` bytes in words: "512 bytes", "3.2 MiB"."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def room(folder: Path, free: int | None, need: int | None = None) -> str:
    """The free space in `folder` (and what a checkpoint needs), for error messages."""
    text = f"in {folder}" if free is None else f"{size_text(free)} free in {folder}"
    return text if need is None else f"{text}, the checkpoint needs about {size_text(need)}"


def save_error(path: Path, state: Any, err: BaseException) -> BaseException | None:
    """The error to raise for `err` from saving `state` to `path`: it names the file, and says
    the disk is full when the OS says so or when torch's opaque write failure coincides with
    less free space than the checkpoint needs. None: let `err` through as it is."""
    folder, where = path.parent, f"checkpoint {path} could not be written"
    if isinstance(err, OSError):
        if err.errno == errno.ENOSPC:
            return OSError(errno.ENOSPC, f"{where}: the disk is full ({room(folder, free_bytes(folder))})")
        if err.errno is not None and err.errno == getattr(errno, "EDQUOT", None):
            return OSError(err.errno, f"{where}: the disk quota is exceeded ({room(folder, free_bytes(folder))})")
        return None if err.errno is None else OSError(err.errno, f"{where}: {err.strerror or err}")
    if isinstance(err, RuntimeError) and any(s in str(err) for s in TORCH_WRITE_FAILURE):
        free, need = free_bytes(folder), state_bytes(state)
        if "No space left" in str(err) or (free is not None and free < need):
            return OSError(errno.ENOSPC, f"{where}: the disk is full ({room(folder, free, need)}); torch said: {err}")
        return RuntimeError(f"{where} ({room(folder, free, need)}): {err}")
    return None


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
    cache folder; None without one. The key covers learner config, task config, seed, version
    and the code that trains it: the core's, the learner's and the task's (`iclbench.codehash`)."""
    folder = current_cache_dir()
    if folder is None:
        return None
    return Checkpoint(folder, cache_key(learner=learner.name, config=learner.config.identity(), task=task.name,
                                        task_config=task.config.model_dump(), seed=generator.initial_seed(),
                                        code=codehash.code_identity(type(learner), type(task))))


class Checkpoint:
    """One cache entry: `<dir>/<key>.pt`, holding a dict of tensors and plain values."""

    def __init__(self, directory: Path, key: str) -> None:
        self.path = Path(directory) / f"{key}.pt"
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it is unreadable or not a training
        state of the right types (then it is discarded, with a warning naming the file)."""
        sweep(self.path.parent)
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
        problem = state_problem(state) if isinstance(state, dict) else "is not a training state"
        if problem is not None:
            self.discard(problem)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` under a unique temporary name, then rename it into place: concurrent
        writers never clash and a kill never leaves a torn checkpoint. A failed write raises an
        error naming the file (an OSError(ENOSPC) when the disk is full)."""
        sweep(self.path.parent)
        try:
            atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError) as err:
            clear = save_error(self.path, state, err)
            if clear is None:
                raise
            raise clear from err

    def discard(self, reason: str) -> None:
        """Warn that this checkpoint `reason` (e.g. "is unreadable") and delete it."""
        warnings.warn(f"checkpoint {self.path} {reason}; discarded, the model will be retrained", stacklevel=3)
        self.path.unlink(missing_ok=True)

    def lock(self, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on this entry across processes; `on_wait()` is called if another holds it."""
        return file_lock(self.lock_path, on_wait=on_wait)
