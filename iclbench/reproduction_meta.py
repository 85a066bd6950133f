"""`reproduction.json`: what a `reproduce` call ran (reproduction, budget, seeds, the spec's
learners under their budget labels, runs, analyses, execution, times), validated when read.

Every field is optional, so a folder written before a field existed still reads; a field that
is present must have its type, or the folder is refused in one line naming the file and field
(a ReproductionFileError, a usage error), never a KeyError deep in a render.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from iclbench.errors import UsageError

META_FILE = "reproduction.json"


class ReproductionFileError(UsageError):
    """A folder's reproduction.json is unreadable or malformed (a usage error naming the file)."""


class RunMeta(BaseModel):
    """One run of the spec as it ran: a suite, its reference's label and its learners' labels."""

    model_config = ConfigDict(extra="forbid")
    suite: str
    align_to: str | None = None
    learners: list[str]


class AnalysisMeta(BaseModel):
    """One analysis of the spec as it ran: its name and full config."""

    model_config = ConfigDict(extra="forbid")
    analysis: str
    config: dict[str, Any]


class ReproductionMeta(BaseModel):
    """The contents of reproduction.json; unknown fields are kept (later versions add some)."""

    model_config = ConfigDict(extra="allow")
    reproduction: str | None = None
    budget: str | None = None
    budget_values: dict[str, Any] | None = None
    seeds: list[int] | None = None
    device: str | None = None
    versions: dict[str, str] | None = None
    git_commit: str | None = None
    labels: dict[str, str] = {}
    runs: list[RunMeta] | None = None
    analyses: list[AnalysisMeta] | None = None
    wall_seconds: float | None = None
    phase_seconds: dict[str, float] | None = None  # this call's training, evaluation and analyses
    earlier_calls_seconds: list[float] = []
    execution: dict[str, Any] | None = None


def read_meta(folder: Path) -> dict[str, Any]:
    """`folder`'s reproduction.json, validated (`ReproductionMeta`), as a plain dict of the
    fields it holds (and `labels`); else a ReproductionFileError naming the file and what is wrong."""
    path = Path(folder) / META_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReproductionFileError(f"{path}: no such file; run `iclbench reproduce` first") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReproductionFileError(f"{path}: cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise ReproductionFileError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                                    "fix it, or delete it and rerun `iclbench reproduce`") from None
    if not isinstance(raw, dict):
        raise ReproductionFileError(f"{path}: expected a JSON object, got {type(raw).__name__} {str(raw)[:40]!r}")
    try:
        meta = ReproductionMeta.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReproductionFileError(f"{path}: field {where}: {first['msg'].lower()} (got {first.get('input')!r:.60})") from None
    return {**meta.model_dump(exclude_unset=True), "labels": meta.labels}


def reproduction_name(folder: Path) -> str:
    """The reproduction `folder` was published from, as its reproduction.json names it; a
    missing name is a ReproductionFileError naming the file."""
    name = read_meta(folder).get("reproduction")
    if not name:
        raise ReproductionFileError(f"{Path(folder) / META_FILE}: expected a string \"reproduction\" name, got {name!r}")
    return name


def write_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write `meta` (checked against the schema first) as `out`/reproduction.json."""
    ReproductionMeta.model_validate(meta)
    (Path(out) / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
