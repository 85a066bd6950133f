"""`iclbench describe NAME`: what a learner, task, suite, analysis or reproduction is and takes.

Plugin components (learners, tasks, analyses) are described from their class: the owning
plugin, the docstring's first paragraph, one row per config option (dotted for nested
configs) with its type, default, bounds and description, and an example of how to set two
options. Suites and reproductions are described from their TOML data, includes resolved.
"""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from tabulate import tabulate

from iclbench.config import StrictConfig, format_spec, set_dotted
from iclbench.registry import unknown

KINDS = {"learner": "learners", "task": "tasks", "suite": "suites", "analysis": "analyses",
         "reproduction": "reproductions"}
"""Each kind a name may have, and the catalog attribute holding that kind's registry."""

WIDTH = 88
EXECUTION_NOTE = "(execution only: not part of labels or cache keys)"
BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def describe(catalog: Any, name: str, kind: str | None = None) -> str:
    """Plain-text description of `name`; with several kinds of that name and no `kind`, all of them.

    Raises the registry's unknown-name error (with a suggestion) when nothing has that name.
    """
    kinds = [_kind(kind)] if kind else [k for k in KINDS if name in _registry(catalog, k)]
    if not kinds:
        names = sorted({n for k in KINDS for n in _registry(catalog, k)})
        raise unknown("name", name, names)
    sections = [_describe_one(catalog, name, k) for k in kinds]
    if len(sections) == 1:
        return sections[0]
    heading = f"{name!r} names a {' and a '.join(kinds)}"
    return "\n\n".join([heading] + sections)


def _kind(kind: str) -> str:
    """The singular kind for `kind` (plurals as in `iclbench list` accepted)."""
    for singular, plural in KINDS.items():
        if kind in (singular, plural):
            return singular
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _registry(catalog: Any, kind: str) -> Any:
    return getattr(catalog, KINDS[kind])


def _describe_one(catalog: Any, name: str, kind: str) -> str:
    """One kind's description; the registry raises for a name it lacks."""
    registry = _registry(catalog, kind)
    if name not in registry:
        raise unknown(kind, name, list(registry))
    header = _header(catalog, kind, name, registry.owner(name))
    if kind == "suite":
        return _describe_suite(catalog, name, header)
    if kind == "reproduction":
        return _describe_reproduction(registry[name](), header)
    return _describe_component(registry[name], kind, header)


def _header(catalog: Any, kind: str, name: str, plugin: str) -> str:
    """`learner gd (plugin gradient-descent: iclbench 0.1.0)`."""
    source = catalog.plugins.sources.get(plugin)
    return f"{kind} {name} (plugin {plugin}" + (f": {source})" if source else ")")


def _paragraph(text: str | None) -> str:
    """The first paragraph of `text`, re-wrapped."""
    if not text:
        return ""
    first = inspect.cleandoc(text).split("\n\n")[0]
    return textwrap.fill(" ".join(first.split()), WIDTH)


# learners, tasks, analyses

def _describe_component(cls: type, kind: str, header: str) -> str:
    """Header, summary, option table and example of a configurable plugin class."""
    parts = [header]
    summary = summary_of(cls)
    if summary:
        parts.append(summary)
    rows = option_rows(cls.Config)
    parts.append(_table(rows, ["option", "type", "default", "bounds", "description"]) if rows else "no options")
    parts.append(f"example: {_example(cls, kind)}")
    return "\n\n".join(parts)


def summary_of(cls: type) -> str:
    """The class's own docstring's first paragraph, else its module's: a subclass without a
    docstring would otherwise show its base class's, which describes something else."""
    doc = cls.__dict__.get("__doc__") or getattr(sys.modules.get(cls.__module__), "__doc__", None)
    return _paragraph(doc)


def option_rows(config: type[StrictConfig], prefix: str = "") -> list[list[str]]:
    """One row per option of `config`: name (dotted inside nested configs), type, default,
    bounds and description, execution-only options marked as such."""
    rows: list[list[str]] = []
    execution_only = config.execution_only() if hasattr(config, "execution_only") else set()
    for key, field in config.model_fields.items():
        nested = _nested_config(field)
        if nested is not None:
            rows += option_rows(nested, f"{prefix}{key}.")
            continue
        description = field.description or ""
        if key in execution_only:
            description = f"{description} {EXECUTION_NOTE}".strip()
        rows.append([prefix + key, type_name(field.annotation), _default_text(field), bounds(field), description])
    return rows


def _nested_config(field: FieldInfo) -> type[BaseModel] | None:
    """The pydantic model class of a nested config field, else None."""
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def type_name(ann: Any) -> str:
    """A readable type: `int`, `float | None`, `'linear' | 'softmax' | list['linear' | 'softmax']`."""
    if ann is None or ann is type(None):
        return "None"
    if ann is Any:
        return "Any"
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]"
    return getattr(ann, "__name__", str(ann).replace("typing.", ""))


def _default(field: FieldInfo) -> Any:
    """The field's default (factories called), or PydanticUndefined when required."""
    return field.get_default(call_default_factory=True, validated_data={})


def _default_text(field: FieldInfo) -> str:
    value = _default(field)
    return "required" if value is PydanticUndefined else repr(value)


def bounds(field: FieldInfo) -> str:
    """`>= 1`, `> 0, < 1`, ... from the field's ge/gt/le/lt constraints; empty if none."""
    out = []
    for meta in field.metadata:
        for attr, op in BOUNDS:
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{op} {value}")
    return ", ".join(out)


def _example(cls: type, kind: str) -> str:
    """How to set the first two options that have a valid example value, in `kind`'s syntax."""
    overrides = example_overrides(cls.Config)
    body = format_spec("", overrides)[1:-1]
    if kind == "learner":
        return format_spec(cls.name, overrides)
    if kind == "task":
        return f"--task {cls.name}" + (f" --task-config {body}" if body else "")
    return f"iclbench analyze {cls.name}" + (f" --analysis-config {body}" if body else "")


def example_overrides(config: type[StrictConfig], count: int = 2) -> dict[str, Any]:
    """Up to `count` options, in declaration order, set to example values the config accepts."""
    chosen: dict[str, Any] = {}
    for key, field in _leaf_fields(config):
        value = _example_value(field)
        if value is None:
            continue
        trial = {**chosen, key: value}
        if _valid(config, trial):
            chosen = trial
        if len(chosen) == count:
            break
    return chosen


def _leaf_fields(config: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(dotted name, field) of every non-nested, non-execution-only option."""
    out = []
    execution_only = config.execution_only() if hasattr(config, "execution_only") else set()
    for key, field in config.model_fields.items():
        nested = _nested_config(field)
        if nested is not None:
            out += _leaf_fields(nested, f"{prefix}{key}.")
        elif key not in execution_only:
            out.append((prefix + key, field))
    return out


def _example_value(field: FieldInfo) -> Any:
    """A value that differs from the default where one is easy to pick (flip a bool, double a
    number, the next literal), the default for plain strings, else None (no example)."""
    default, ann = _default(field), field.annotation
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default * 2 if default else type(default)(1)
    choices = [a for a in _flat_args(ann) if isinstance(a, str)]
    if choices and default in choices:
        return next((c for c in choices if c != default), None)
    if isinstance(default, str):
        return default
    if default is None:
        members = _flat_args(ann)
        return 1 if int in members else 0.1 if float in members else None
    return None


def _flat_args(ann: Any) -> list[Any]:
    """The members of a union (nested unions flattened) and the values of literals in it."""
    origin = get_origin(ann)
    if origin in (Union, types.UnionType):
        return [m for a in get_args(ann) for m in _flat_args(a)]
    if origin is Literal:
        return list(get_args(ann))
    return [ann]


def _valid(config: type[StrictConfig], overrides: dict[str, Any]) -> bool:
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        set_dotted(nested, key, value)
    try:
        config(**nested)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


# suites

def _describe_suite(catalog: Any, name: str, header: str) -> str:
    """Description, include, training task and the table of evaluation tasks of a suite."""
    spec = catalog.suites.spec(name)
    parts = [header]
    if spec.description:
        parts.append(textwrap.fill(spec.description, WIDTH))
    lines = []
    if spec.include:
        lines.append(f"includes: {spec.include}")
    lines.append(f"train:    {_task_text(spec.train.task, spec.train.config)}")
    parts.append("\n".join(lines))
    rows = [[_eval_label(catalog, e), e.task, _config_text(e.config), e.group or "",
             "" if e.value is None else f"{e.value:g}", "yes" if e.in_distribution else "no"]
            for e in spec.eval]
    heading = f"{len(rows)} evaluation task{'s' if len(rows) != 1 else ''}:"
    parts.append(heading + "\n" + _table(rows, ["label", "task", "config", "group", "value", "in-distribution"]))
    return "\n\n".join(parts)


def _task_text(task: str, config: dict[str, Any]) -> str:
    return f"{task} {_config_text(config)}" if config else f"{task} (default config)"


def _config_text(config: dict[str, Any]) -> str:
    """A config table as `key=value,...` in override syntax, values exact (floats unrounded)."""
    return ",".join(f"{k}={_value_text(v, top=True)}" for k, v in config.items())


def _value_text(value: Any, top: bool = False) -> str:
    """A TOML value as `--*-config` parses it back: bare strings at the top, quoted inside."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if top else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _eval_label(catalog: Any, entry: Any) -> str:
    """The entry's label; without one, its task's label as `SuiteRegistry.load` computes it."""
    if entry.label:
        return entry.label
    try:
        return catalog.tasks[entry.task](entry.config).label
    except (LookupError, ValueError):
        return format_spec(entry.task, entry.config)


# reproductions

def _describe_reproduction(repro: Any, header: str) -> str:
    """Description, budgets with their per-learner training, runs and analyses of a reproduction."""
    spec = repro.spec()
    parts = [header]
    if spec.description:
        parts.append(textwrap.fill(spec.description, WIDTH))
    parts.append(_budgets_text(spec.budgets))
    parts.append(_runs_text(spec.runs))
    if spec.analyses:
        rows = [[a.name, a.suite, _config_text(a.config)] for a in spec.analyses]
        parts.append("analyses:\n" + _table(rows, ["analysis", "suite", "config"]))
    return "\n\n".join(parts)


def _budgets_text(budgets: dict[str, Any]) -> str:
    """A line per budget, then its per-learner training overrides as a table."""
    blocks = []
    for name, budget in budgets.items():
        line = f"budget {name}: train_steps={budget.train_steps}, n_tasks={budget.n_tasks}"
        if budget.train:
            rows = [[spec, _config_text(over)] for spec, over in budget.train.items()]
            line += "\n" + textwrap.indent(_table(rows, ["learner", "training overrides"]), "  ")
        blocks.append(line)
    return "budgets:\n" + "\n".join(blocks)


def _runs_text(runs: list[Any]) -> str:
    """Each run's suite, alignment reference and learners, the learner list wrapped."""
    lines = ["runs:"]
    for i, run in enumerate(runs, 1):
        head = f"  {i}. suite {run.suite}" + (f", aligned to {run.align_to}" if run.align_to else "") + ": "
        lines.append(textwrap.fill(", ".join(run.learners), WIDTH, initial_indent=head,
                                   subsequent_indent=" " * 6, break_on_hyphens=False))
    return "\n".join(lines)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    """Aligned plain-text columns, cells kept exactly as given."""
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
