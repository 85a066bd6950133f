"""Results on disk: one JSON object per (learner, task, seed) in `results.jsonl`.

Records are appended and fsynced one at a time, so an interrupted run keeps everything it
finished, and a rerun skips what is already there.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import torch

import iclbench

RESULTS_FILE = "results.jsonl"
ANALYSES_FILE = "analyses.jsonl"


def record_key(r: dict[str, Any]) -> str:
    """What makes two records the same measurement."""
    fields = ("learner", "learner_config", "suite", "task_label", "task", "task_config", "seed",
              "n_tasks", "dtype", "device_type", "align_to")
    key = {f: r.get(f) for f in fields}
    key["version"] = r.get("versions", {}).get("iclbench")
    return json.dumps(key, sort_keys=True)


class ResultStore:
    """An append-only JSON-lines file (`results.jsonl` by default) in `root`."""

    def __init__(self, root: str | Path, filename: str = RESULTS_FILE) -> None:
        self.root = Path(root)
        self.path = self.root / filename

    def append(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a write torn by a kill: end that line so this record stays whole
                    f.write(b"\n")
            f.write((json.dumps(record, sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path) if self.path.exists() else []


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
            out.append(json.loads(line))
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
    return {"python": platform.python_version(), "torch": torch.__version__, "iclbench": iclbench.__version__}
