"""What a stored record is: its JSON-lines encoding and the schema it is checked against on read.

Non-finite numbers. JSON has no NaN or infinity, so the writer stores them as the strings
"NaN", "Infinity" and "-Infinity", and says where: a record whose line holds one of those
strings carries `_nonfinite`, the list of paths (dict keys and list indices from the record's
top) at which the writer replaced a float, e.g. `[["metrics", "loss"], ["position_curve",
"loss", 3]]`. The reader turns the strings back into floats at exactly those paths, drops the
field, and leaves every other string alone: an eval task labelled "Infinity" stays a string
and still matches its stored key. A record with no such string has no `_nonfinite` field.

Lines written before `_nonfinite` existed (no field, but marker strings) are read by a legacy
rule: the strings are restored only inside the fields a schema declares numeric
(`legacy_numeric`: metrics, timings, curves, hyperparameters and fit info of results; the
`result` of analyses), never in identity or label fields (label, task_label, suite, configs,
provenance, ...). A legacy config that held a non-finite float thus reads back as the string,
so its measurement is computed once more on a rerun, after which the new record says where its
floats are.

Schemas. `ResultRecord` is one measurement of `results.jsonl` (and of a unit's record file);
`AnalysisRecord` one line of `analyses.jsonl`. Both check only the fields readers rely on,
strictly (no "1" for 1, no true for a number), and allow any other field, so records may grow.
A line that fails is skipped by the reader with a warning naming `file:line`, the field and
its value (see `iclbench.store.read_records`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

NONFINITE_FIELD = "_nonfinite"
"""The record field listing where the writer replaced non-finite floats by marker strings."""

MARKERS: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

Number = float  # strict: an int or a float, never a bool or a string
Curve = dict[str, list[Number | None]]


class RecordError(ValueError):
    """A line that is not a valid record: `field` names what is wrong ("" for the whole line),
    `problem` how (e.g. "is 'abc' (input should be a valid number)")."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field} {problem}" if field else problem)
        self.field, self.problem = field, problem


class Record(BaseModel):
    """Base of the stored-record schemas: strict types, unknown fields allowed."""

    model_config = ConfigDict(strict=True, extra="ignore")
    legacy_numeric: ClassVar[frozenset[str]] = frozenset()
    """Fields in which a legacy line's marker strings are numbers (see the module docstring)."""


class ResultRecord(Record):
    """One (learner, eval task, seed) measurement, as `iclbench.runner.Evaluation` writes it."""

    suite: str
    label: str
    task_label: str
    seed: int
    metrics: dict[str, Number | None]
    status: Literal["ok", "diverged", "failed"] | None = None  # absent in records older than statuses: "ok"
    learner: str | None = None
    task: str | None = None
    group: str | None = None
    value: Number | None = None
    in_distribution: bool | None = None
    align_to: str | None = None
    n_tasks: int | None = None
    n_nonfinite: int | None = None
    seconds: Number | None = None
    fit_seconds: Number | None = None
    stage: str | None = None
    error: str | None = None
    created_at: str | None = None
    git_commit: str | None = None
    dtype: str | None = None
    device: str | None = None
    device_type: str | None = None
    learner_config: dict[str, Any] | None = None
    task_config: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    hyperparameters: dict[str, Any] | None = None
    fit_info: dict[str, Any] | None = None
    prefix_curve: Curve | None = None
    position_curve: Curve | None = None
    position_sensitivity: Curve | None = None
    samples: str | None = None  # per-task outputs (`--log-samples`): a file beside results.jsonl

    legacy_numeric: ClassVar[frozenset[str]] = frozenset({
        "metrics", "seconds", "fit_seconds", "value", "prefix_curve", "position_curve", "position_sensitivity",
        "hyperparameters", "fit_info"})


class AnalysisRecord(Record):
    """One analysis result for one seed, as `iclbench analyze` and `reproduce` write it."""

    analysis: str
    seed: int
    config: dict[str, Any]
    result: dict[str, Any]
    suite: str | None = None
    n_tasks: int | None = None
    seconds: float | None = None  # wall time of the analysis, its learners' fits included

    legacy_numeric: ClassVar[frozenset[str]] = frozenset({"result"})


ANALYSES_FILE = "analyses.jsonl"


def schema_for(path: str | Path) -> type[Record]:
    """The schema of the records in the file at `path`: analyses in `analyses.jsonl`, else results."""
    return AnalysisRecord if Path(path).name == ANALYSES_FILE else ResultRecord


# --- writing -----------------------------------------------------------------------------------

def _json_key(key: Any) -> str:
    """A dict key as `json.dumps` writes it (None -> "null", 3 -> "3")."""
    return key if isinstance(key, str) else next(iter(json.loads(json.dumps({key: 0}))))


def _mark(value: Any, path: list[str | int], found: list[list[str | int]], seen: list[bool]) -> Any:
    """`value` with non-finite floats replaced by markers, their paths added to `found`;
    `seen[0]` is set if a marker string turns up at all (one already there as a string)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        found.append(list(path))
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        if value in MARKERS:
            seen[0] = True
        return value
    if isinstance(value, dict):
        return {k: _mark(v, [*path, _json_key(k)], found, seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark(v, [*path, i], found, seen) for i, v in enumerate(value)]
    return value


def encode(record: dict[str, Any]) -> dict[str, Any]:
    """`record` as strict JSON, with `_nonfinite` listing the paths of non-finite floats whenever
    its text will hold a marker string (replaced or not), so a reader never has to guess."""
    found: list[list[str | int]] = []
    seen = [False]
    out = _mark({k: v for k, v in record.items() if k != NONFINITE_FIELD}, [], found, seen)
    if found or seen[0]:
        out[NONFINITE_FIELD] = found
    return out


# --- reading -----------------------------------------------------------------------------------

def may_hold_markers(line: str) -> bool:
    """False when `line` cannot hold a marker string: the common case, read without a walk."""
    return '"NaN"' in line or 'Infinity"' in line


def _restore_deep(value: Any) -> Any:
    """`value` with every marker string below it turned back into its float (legacy rule)."""
    if isinstance(value, str):
        return MARKERS.get(value, value)
    if isinstance(value, dict):
        return {k: _restore_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_deep(v) for v in value]
    return value


def _restore_at(obj: dict[str, Any], path: Any) -> None:
    """Turn the marker string at `path` in `obj` back into its float, or raise RecordError."""
    where = f"lists {json.dumps(path)}, which"
    if not isinstance(path, list) or not path:
        raise RecordError(NONFINITE_FIELD, f"{where} is not a path (a non-empty list of keys and indices)")
    parent: Any = obj
    for step in path[:-1]:
        parent = _child(parent, step, where)
    leaf = path[-1]
    value = _child(parent, leaf, where)
    if not isinstance(value, str) or value not in MARKERS:
        raise RecordError(NONFINITE_FIELD, f"{where} leads to {short(value)}, not one of {', '.join(MARKERS)}")
    parent[leaf] = MARKERS[value]


def _child(container: Any, step: Any, where: str) -> Any:
    """`container[step]` for a dict key or list index, or a RecordError naming the path."""
    if isinstance(container, dict) and isinstance(step, str) and step in container:
        return container[step]
    if isinstance(container, list) and isinstance(step, int) and not isinstance(step, bool) \
            and 0 <= step < len(container):
        return container[step]
    raise RecordError(NONFINITE_FIELD, f"{where} does not lead to a value of the record")


def restore_nonfinite(obj: dict[str, Any], schema: type[Record], line: str) -> dict[str, Any]:
    """`obj` (parsed from `line`) with its marker strings turned back into floats, in place: at
    the paths `_nonfinite` lists, or in a legacy line inside `schema.legacy_numeric` fields."""
    if NONFINITE_FIELD in obj:
        paths = obj.pop(NONFINITE_FIELD)
        if not isinstance(paths, list):
            raise RecordError(NONFINITE_FIELD, f"is {short(paths)} (expected a list of paths)")
        for path in paths:
            _restore_at(obj, path)
    elif may_hold_markers(line):
        for name in schema.legacy_numeric & obj.keys():
            obj[name] = _restore_deep(obj[name])
    return obj


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """What a JSON value is, in words, for messages about lines that are not records."""
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def check(obj: Any, schema: type[Record]) -> None:
    """Raise RecordError naming the first field of `obj` that `schema` rejects, with its value."""
    if not isinstance(obj, dict):
        shown = "" if obj is None else f" ({short(obj)})"
        raise RecordError("", f"the line is {_kind(obj)}{shown}, not a JSON object")
    try:
        schema.model_validate(obj)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "record"
        if first["type"] == "missing":
            raise RecordError(field, "is missing") from None
        raise RecordError(field, f"is {short(first['input'])} ({first['msg'][0].lower()}{first['msg'][1:]})") from None


def decode(line: str, schema: type[Record]) -> dict[str, Any]:
    """The record on one JSON line, its non-finite numbers restored and its fields checked;
    json.JSONDecodeError for a line that is not JSON, RecordError for one that is no record."""
    obj = json.loads(line)
    if isinstance(obj, dict):
        restore_nonfinite(obj, schema, line)
    check(obj, schema)
    return obj
