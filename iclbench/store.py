"""Results on disk: one JSON object per (learner, task, seed) in `results.jsonl`.

Records are appended and fsynced one at a time under a lock, so an interrupted run keeps
everything it finished, several processes can share one folder, and a rerun skips what is
already there. Every line is strict JSON: non-finite numbers are written as the strings
"NaN", "Infinity" and "-Infinity" and read back as floats.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import iclbench
from iclbench.locks import file_lock

RESULTS_FILE = "results.jsonl"
ANALYSES_FILE = "analyses.jsonl"


NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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
    """`value` with every non-finite float replaced by its JSON-safe string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: to_strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_strict_json(v) for v in value]
    return value


def from_strict_json(value: Any) -> Any:
    """Inverse of `to_strict_json`."""
    if isinstance(value, str):
        return NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_strict_json(v) for v in value]
    return value


class ResultStore:
    """An append-only JSON-lines file (`results.jsonl` by default) in `root`."""

    def __init__(self, root: str | Path, filename: str = RESULTS_FILE) -> None:
        self.root = Path(root)
        self.path = self.root / filename

    def append(self, record: dict[str, Any]) -> tuple[int, int]:
        """Append one record; returns the file's size before and after, read under the lock, so
        a caller can tell whether anyone else wrote in between."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(to_strict_json(record), sort_keys=True, allow_nan=False) + "\n"
        with file_lock(self.lock_dir / f"{self.path.name}.lock"), open(self.path, "a+b") as f:
            before = f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a write torn by a kill: end that line so this record stays whole
                    f.write(b"\n")
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
            return before, f.tell()

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


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a `results.jsonl` file or a folder holding one; a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(from_strict_json(json.loads(line)))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{i}: skipping a line that is not JSON (interrupted write?)", stacklevel=2)
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
