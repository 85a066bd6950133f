"""Per-task outputs of a record (`--log-samples`): each task's prediction, target and loss, so a
run can be re-analysed (other statistics, paired tests between any two learners) without
running it again.

One NumPy `.npz` file per record in `OUT/samples/`, named by the record's key and holding it:
columnar arrays that NumPy, already a dependency through torch, reads without pandas or
pyarrow; compressed (about 4 bytes a float); written atomically, so an interrupted run leaves
whole files only. The record points at its file (`samples`, relative to the results folder).

Arrays: `predictions` (n_tasks, dy), `targets` (n_tasks, dy), `losses` (n_tasks,) and, with a
reference (`--align-to`), `reference_losses` (n_tasks,) on the same tasks; `record_key`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iclbench.store import record_key, unit_key

FOLDER = "samples"


def relative_path(rec: dict[str, Any]) -> str:
    """Where a record's samples go, relative to its results folder: named by its key."""
    return f"{FOLDER}/{unit_key(record_key(rec))}.npz"


def write(root: Path, rec: dict[str, Any], arrays: dict[str, torch.Tensor]) -> str:
    """Store `arrays` (name -> tensor) for record `rec` under `root`; returns the relative path."""
    rel = relative_path(rec)
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, record_key=np.array(record_key(rec)),
                            **{k: v.detach().cpu().numpy() for k, v in arrays.items()})
    os.replace(tmp, path)
    return rel


def present(root: Path, rec: dict[str, Any]) -> bool:
    """Whether a stored record's samples file is there (a record made without them is not)."""
    return bool(rec.get("samples")) and (Path(root) / rec["samples"]).is_file()


def load(root: Path, rec: dict[str, Any]) -> dict[str, np.ndarray]:
    """A record's arrays; a file that belongs to another record is an error, not a silent mix-up."""
    with np.load(Path(root) / rec["samples"]) as data:
        arrays = {k: data[k] for k in data.files}
    if str(arrays.pop("record_key")) != record_key(rec):
        raise ValueError(f"{rec['samples']}: holds another record's samples")
    return arrays
