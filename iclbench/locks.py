"""File locks and atomic writes, so several processes can share one results folder and cache.

A lock is an exclusive `flock` on a `<name>.lock` file next to what it guards: it is held
for one unit of work (a training, a learner's records for a seed, one append) and released
when the process exits, even if it is killed. Temporary files get unique names and reach
their final name by an atomic rename, so readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: locking is a no-op, single-process use stays correct
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def file_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the duration of the block;
    `on_wait()` is called first if another holder makes this one wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if fcntl is not None:
            _acquire(f.fileno(), on_wait)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _acquire(fd: int, on_wait: Callable[[], None] | None) -> None:
    """Take the exclusive flock on `fd`, telling `on_wait` when it is held elsewhere."""
    if on_wait is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            on_wait()
    fcntl.flock(fd, fcntl.LOCK_EX)


def unique_tmp(path: str | Path) -> Path:
    """A temporary name beside `path` that no other process or thread will pick."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a unique temporary file, then rename it onto `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
