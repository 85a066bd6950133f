"""File locks and atomic writes, so several processes can share one results folder and cache.

A lock is an exclusive `flock` on a `<name>.lock` file next to what it guards: it is held
for one unit of work (a training, a learner's records for a seed, one append) and released
when the process exits, even if it is killed. Temporary files get unique names and reach
their final name by an atomic rename, so readers never see a half-written file.

A temporary is named `.<name>.<pid>@<host>.<random>.tmp` after its writer, so one left by a
killed writer can be told from one being written: `remove_dead_temporaries` deletes it once
it has not been written to for `DEAD_AFTER` seconds and its writer, a process of this host,
is gone. The process of another host (or of a name without a host, from earlier versions)
cannot be asked, so its temporary is deleted only after `FOREIGN_DEAD_AFTER` seconds
untouched: a live writer keeps writing to its temporary until it renames it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: locking is a no-op, single-process use stays correct
    fcntl = None  # type: ignore[assignment]

DEAD_AFTER = 10 * 60
"""Seconds a temporary of a dead writer of this host stays untouched before it is deleted."""

FOREIGN_DEAD_AFTER = 24 * 60 * 60
"""Seconds a temporary whose writer cannot be asked (another host's) stays untouched before it is deleted."""

TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9-]+))?\.[0-9a-f]{8}\.tmp")
"""The name of a temporary written by `atomic_write` (the host part is absent in older names)."""


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


@lru_cache(maxsize=1)
def host_id() -> str:
    """This machine's host name, reduced to file-name-safe characters, for temporaries' names."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40].strip("-") or "host"


def unique_tmp(path: str | Path) -> Path:
    """A temporary name beside `path` that no other process or thread will pick; it names the
    writing process and host, so a temporary left by a killed writer can be recognised."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}@{host_id()}.{uuid.uuid4().hex[:8]}.tmp")


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user counts; so does a pid
    reused since: a temporary is never taken for dead by mistake). Off POSIX it cannot be asked
    safely (os.kill would end the process), so every process counts as alive there."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, another user's
        return True
    return True


def writer_dead(tmp: Path, now: float) -> bool:
    """Whether the temporary `tmp` was left by a writer that is gone (see the module docstring);
    False for a name `atomic_write` does not give."""
    match = TEMPORARY.fullmatch(tmp.name)
    if match is None:
        return False
    try:
        idle = now - tmp.stat().st_mtime
    except OSError:  # renamed into place or removed meanwhile
        return False
    if match["host"] == host_id():
        return idle >= DEAD_AFTER and not process_alive(int(match["pid"]))
    return idle >= FOREIGN_DEAD_AFTER


def remove_dead_temporaries(directory: str | Path, suffix: str = "") -> list[Path]:
    """Delete the temporaries in `directory` for files named `*<suffix>` whose writers are gone;
    returns what was deleted. A live writer's temporary is never touched."""
    directory, now, removed = Path(directory), time.time(), []
    try:
        candidates = list(directory.glob(f".*{suffix}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        match = TEMPORARY.fullmatch(tmp.name)
        if match is None or not match["target"].endswith(suffix) or not writer_dead(tmp, now):
            continue  # not a temporary of such a file, or its writer may still be at work
        try:
            tmp.unlink()
        except OSError:  # gone already, or not ours to delete: either way nothing to clean
            continue
        removed.append(tmp)
    return removed


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
