"""Results on disk: one JSON object per (learner, task, seed) in `results.jsonl`.

Records are appended and fsynced one at a time under a lock, so an interrupted run keeps
everything it finished, several processes can share one folder, and a rerun skips what is
already there. Every line is strict JSON: non-finite numbers are written as the strings
"NaN", "Infinity" and "-Infinity", and the record says where (its `_nonfinite` field), so
they are read back as floats there and nowhere else (`iclbench.record_schema`).

A line torn by a kill or a full disk is skipped by readers; the next append, under the lock
that every writer holds, cuts it off (a failed append cuts its own partial line at once), so
the file is whole JSON lines again. Records are checked on read against their file's schema:
a line that is not JSON, not a record, or a record with a bad field is skipped with a warning
naming `file:line` (and the field), never passed on as a result.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import platform
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterable

import iclbench
from iclbench.locks import file_lock
from iclbench.record_schema import ANALYSES_FILE  # noqa: F401 (re-exported: where analyses are stored)
from iclbench.record_schema import MARKERS, Record, RecordError, decode, encode, schema_for

RESULTS_FILE = "results.jsonl"

NONFINITE = MARKERS
"""The strings that stand for non-finite floats in a record's JSON."""

TAIL_BLOCK = 1 << 16
"""Bytes read at a time when looking back for the start of a torn last line."""


def record_key(r: dict[str, Any]) -> str:
    """What makes two records the same measurement: configs, seed, size, numerics, and where
    the learner's and task's code came from (plugin distribution and version, or file hash)."""
    fields = ("learner", "learner_config", "suite", "task_label", "task", "task_config", "seed",
              "n_tasks", "dtype", "device_type", "align_to", "provenance")
    key = {f: r.get(f) for f in fields}
    key["version"] = r.get("versions", {}).get("iclbench")
    return json.dumps(key, sort_keys=True)


def unit_key(*parts: Any) -> str:
    """A short file-name-safe hash naming one unit of work, for its lock."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def to_strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by its JSON-safe string (for canonical
    texts; records are written by `record_schema.encode`, which also says where)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: to_strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_strict_json(v) for v in value]
    return value


class ResultStore:
    """An append-only JSON-lines file (`results.jsonl` by default) in `root`."""

    def __init__(self, root: str | Path, filename: str = RESULTS_FILE) -> None:
        self.root = Path(root)
        self.path = self.root / filename

    def append(self, record: dict[str, Any]) -> tuple[int, int]:
        """Append one record; returns the file's size before and after, read under the lock, so
        a caller can tell whether anyone else wrote in between. A torn last line left by a killed
        writer is cut off first; a write that fails (a full disk) cuts its own partial line and
        raises an OSError naming the file."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(encode(record), sort_keys=True, allow_nan=False) + "\n"
        with file_lock(self.lock_dir / f"{self.path.name}.lock"), open(self.path, "a+b", buffering=0) as f:
            before = f.seek(0, os.SEEK_END)
            end = repair_tail(f, self.path)
            write_whole(f, line.encode(), end, self.path)
            return before, f.seek(0, os.SEEK_END)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path) if self.path.exists() else []

    def size(self) -> int:
        """Bytes in the results file (0 if absent): a cheap test for records added by others."""
        return self.path.stat().st_size if self.path.exists() else 0

    @property
    def lock_dir(self) -> Path:
        return self.root / ".locks"

    def unit_lock(self, key: str):
        """A lock for one unit of work (one learner's records for one seed), so concurrent runs
        on this folder neither duplicate records nor fit the same learner twice."""
        return file_lock(self.lock_dir / f"{key}.lock")


def repair_tail(f: IO[bytes], path: Path) -> int:
    """Make the file open as `f` end in a newline, under the append lock; returns its new size.
    A last line without one is a write cut short by a kill or a full disk: it is dropped, with
    a warning saying how many bytes, unless it is a whole JSON line that only lacks its newline."""
    size = f.seek(0, os.SEEK_END)
    start, tail = last_line(f, size)
    if not tail:
        return size
    try:
        json.loads(tail)
    except ValueError:
        os.ftruncate(f.fileno(), start)
        warnings.warn(f"{path}:{start_line(f, start)}: dropped a torn last line ({len(tail)} bytes, a write cut "
                      "short by a kill or a full disk) before appending", stacklevel=3)
        return start
    write_whole(f, b"\n", size, path)
    return size + 1


def last_line(f: IO[bytes], size: int) -> tuple[int, bytes]:
    """(offset, bytes) of what follows the last newline of `f` (`size` bytes long): empty when
    the file ends in a newline. Reads back from the end, `TAIL_BLOCK` bytes at a time."""
    tail, pos = b"", size
    while pos > 0:
        begin = max(0, pos - TAIL_BLOCK)
        f.seek(begin)
        block = f.read(pos - begin)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1, block[cut + 1:] + tail
        tail, pos = block + tail, begin
    return 0, tail


def start_line(f: IO[bytes], offset: int) -> int:
    """The 1-based number of the line that starts at byte `offset` of `f`."""
    f.seek(0)
    lines, left = 1, offset
    while left > 0:
        block = f.read(min(left, TAIL_BLOCK))
        if not block:
            break
        lines, left = lines + block.count(b"\n"), left - len(block)
    return lines


def write_whole(f: IO[bytes], data: bytes, end: int, path: Path) -> None:
    """Write `data` at the end of the unbuffered `f` and fsync it; on a failure cut the file back
    to `end` (its size before), so no partial line stays, and raise an error naming `path`. An
    interruption (Ctrl-C, SIGTERM) once the whole line is written keeps it: it is a finished
    record, and cutting it would lose what the run had done."""
    view = memoryview(data)
    try:
        while view:
            view = view[f.write(view):]
        os.fsync(f.fileno())
    except BaseException as err:
        if view or isinstance(err, OSError):  # a partial line, or one the disk may not hold
            try:
                os.ftruncate(f.fileno(), end)
            except OSError:
                pass  # the next append cuts the partial line instead
        if isinstance(err, OSError):
            full = " (the disk is full)" if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) else ""
            raise OSError(err.errno, f"could not append a record to {path}{full}: {err.strerror or err}") from err
        raise


def read_records(path: str | Path, schema: type[Record] | None = None) -> list[dict[str, Any]]:
    """Records from a `results.jsonl` file or a folder holding one, checked against `schema`
    (default: the file's, see `record_schema.schema_for`). A torn line, a line that is not a
    record and a record with a bad field are skipped, each with a warning naming file:line."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    schema = schema or schema_for(path)
    out = []
    for i, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            out.append(decode(raw.decode(), schema))
        except ValueError as err:  # json.JSONDecodeError, UnicodeDecodeError, RecordError
            what = f"an invalid record: {err}" if isinstance(err, RecordError) else \
                "a line that is not JSON (interrupted write?)"
            warnings.warn(f"{path}:{i}: skipping {what}", stacklevel=2)
    return out


def read_all(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [r for p in paths for r in read_records(p)]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the iclbench source tree, when it is a git checkout."""
    src = Path(iclbench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "iclbench": iclbench.__version__}
