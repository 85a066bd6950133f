"""Strict pydantic configs shared by learners and tasks, and `key=value` override parsing.

Configs reject unknown fields so a misspelt option fails loudly, naming the field.
"""

from __future__ import annotations

import tomllib
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from iclbench.errors import UsageError


EXECUTION_ONLY = {"execution_only": True}
"""`Field(..., json_schema_extra=EXECUTION_ONLY)` marks a field that changes how a run executes
(checkpoint or evaluation cadence) but not what it computes: it stays out of labels and keys."""

OPTIONAL = {"optional": True}
"""`Field(None, json_schema_extra=OPTIONAL)` marks an opt-in option whose unset value (None)
leaves behaviour as it was before the option existed: unset, it stays out of keys, so adding
such an option keeps every existing record and checkpoint valid."""


class StrictConfig(BaseModel):
    """Base of every learner and task config: unknown fields are errors, values validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def execution_only(cls) -> set[str]:
        """Names of this config's execution-only fields."""
        return {k for k, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("execution_only")}

    def _unset_optional(self) -> set[str]:
        """Opt-in fields (OPTIONAL) that are unset here."""
        return {k for k, f in type(self).model_fields.items()
                if (f.json_schema_extra or {}).get("optional") and getattr(self, k) is None}

    def identity(self) -> dict[str, Any]:
        """The config as plain data without execution-only fields (nested ones included): what
        labels, record keys and checkpoint keys are built from."""
        out: dict[str, Any] = {}
        for k in type(self).model_fields:
            if k in self.execution_only() or k in self._unset_optional():
                continue
            v = getattr(self, k)
            out[k] = v.identity() if isinstance(v, StrictConfig) else (v.model_dump() if isinstance(v, BaseModel) else v)
        return out

    def overrides(self) -> dict[str, Any]:
        """Fields that differ from the class defaults, in declaration order; nested configs
        contribute dotted keys (`train.steps`). Execution-only fields are left out."""
        defaults = type(self)()
        out: dict[str, Any] = {}
        for k in type(self).model_fields:
            if k in self.execution_only():
                continue
            mine, default = getattr(self, k), getattr(defaults, k)
            if isinstance(mine, StrictConfig) and type(mine) is type(default):
                out.update({f"{k}.{sub}": v for sub, v in mine.overrides().items()})
            elif mine != default:
                out[k] = mine.model_dump() if isinstance(mine, BaseModel) else mine
        return out


class ConfigError(UsageError):
    """A config could not be built; the message names the owner, field and value (a usage error)."""


def build_config(cls: type[StrictConfig], values: dict[str, Any], owner: str) -> StrictConfig:
    """Validate `values` against `cls`; re-raise pydantic's message prefixed with `owner`."""
    try:
        return cls(**values)
    except ValidationError as err:
        lines = [_error_line(cls, e) for e in err.errors()]
        raise ConfigError(f"invalid config for {owner}:\n" + "\n".join(lines)) from None


def _error_line(cls: type[BaseModel], error: ErrorDetails) -> str:
    """One indented `field: msg (got value)` line; an unknown key also lists the valid ones,
    so a misspelt option can be fixed without reading the source."""
    loc = error["loc"]
    field = ".".join(str(p) for p in loc) or "<config>"
    line = f"  {field}: {error['msg']} (got {error.get('input')!r})"
    if error["type"] == "extra_forbidden" and loc:
        valid = _valid_keys(cls, loc[:-1])
        if valid:
            line += "; valid keys: " + ", ".join(valid)
    return line


def _valid_keys(cls: type[BaseModel], parent: tuple[int | str, ...]) -> list[str]:
    """Dotted field names of the model at `parent` inside `cls` (`train.steps, ...` under
    `train`); empty when that location is not one model."""
    models, prefix = [cls], []
    for part in parent:
        tagged = [m for m in models if m.__name__ == part]
        if tagged:  # pydantic names the union member it tried: no key of its own
            models = tagged
        elif isinstance(part, int):  # an item of a list of models
            prefix.append(str(part))
        else:
            owner = next((m for m in models if part in m.model_fields), None)
            if owner is None:
                return []
            prefix.append(part)
            models = _models_in(owner.model_fields[part].annotation)
    if len(models) != 1:
        return []
    return [".".join([*prefix, k]) for k in models[0].model_fields]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (`TrainConfig`, `TrainConfig | None`,
    `list[TrainConfig]`, `A | B`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def parse_value(text: str) -> Any:
    """Parse one override value as TOML (`2`, `true`, `[1, 2]`, `"a"`), `None` (any case) as
    None, which TOML cannot say (an optional field back at its unset value), else keep the string."""
    if text.strip().lower() == "none":
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_CLOSERS = {"[": "]", "(": ")"}
_STRING_STARTS = {"", "=", ",", "[", "("}
"""A quote opens a TOML string only where a value starts, so `c=don't` stays a plain word."""


def _top_level_indices(text: str) -> list[int]:
    """Indices of the characters of `text` outside brackets and quoted strings, including the
    brackets that open and close each top-level group.

    Raises ConfigError when brackets do not pair up or a string is not closed, so a malformed
    spec fails with a message instead of being split or parsed wrongly.
    """
    out: list[int] = []
    stack: list[tuple[str, int]] = []
    quote: tuple[str, int] | None = None
    escaped, prev = False, ""
    for i, ch in enumerate(text):
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\" and quote[0] == '"':
                escaped = True
            elif ch == quote[0]:
                quote = None
            continue
        if ch in "\"'" and prev in _STRING_STARTS:
            quote = (ch, i)
        elif ch in _CLOSERS:
            stack.append((ch, i))
        elif ch in _CLOSERS.values():
            _check_closer(text, stack, ch, i)
            stack.pop()
        if not stack or (len(stack) == 1 and stack[0][1] == i):
            out.append(i)
        if not ch.isspace():
            prev = ch
    if quote is not None:
        raise ConfigError(f"unterminated string in {text!r}: {quote[0]!r} at character {quote[1] + 1} is never closed")
    if stack:
        opener, j = stack[-1]
        raise ConfigError(f"unbalanced bracket in {text!r}: {opener!r} at character {j + 1} is never closed")
    return out


def _check_closer(text: str, stack: list[tuple[str, int]], ch: str, i: int) -> None:
    """Raise ConfigError unless closing bracket `ch` at index `i` matches the innermost open one."""
    if not stack:
        raise ConfigError(f"unbalanced bracket in {text!r}: {ch!r} at character {i + 1} closes nothing")
    opener, j = stack[-1]
    if _CLOSERS[opener] != ch:
        raise ConfigError(
            f"unbalanced bracket in {text!r}: {ch!r} at character {i + 1} does not close {opener!r} at character {j + 1}"
        )


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets and strings, so `gd[steps=2,per_step=true],zero` has two
    items; unbalanced brackets raise ConfigError."""
    cuts = [i for i in _top_level_indices(text) if text[i] == sep]
    bounds = zip([-1, *cuts], [*cuts, len(text)])
    parts = (text[a + 1:b].strip() for a, b in bounds)
    return [p for p in parts if p]


def parse_assignments(text: str) -> dict[str, Any]:
    """Parse `a=1,b=true,train.steps=50` into `{"a": 1, "b": True, "train": {"steps": 50}}`."""
    out: dict[str, Any] = {}
    for item in split_top_level(text):
        if "=" not in item:
            raise ConfigError(f"expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        set_dotted(out, key.strip(), parse_value(value.strip()))
    return out


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """`target["a"]["b"] = value` for key `a.b`, creating nested dicts on the way."""
    *parents, last = key.split(".")
    for p in parents:
        target = target.setdefault(p, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{key!r}: {p!r} is already set to a value, not a table")
    target[last] = value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested override dicts; `extra` wins."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse `name` or `name[key=value,...]` into the name and its overrides; malformed
    brackets (`gd[steps=2`, `gd]`, `gd[steps=2]x`) raise ConfigError."""
    spec = spec.strip()
    top = _top_level_indices(spec)
    start = next((i for i in top if spec[i] == "["), None)
    if start is None:
        return spec, {}
    end = next(i for i in top if i > start)  # the matching "]": nothing inside is top level
    if end != len(spec) - 1:
        raise ConfigError(f"unbalanced bracket in {spec!r}: {spec[end + 1:]!r} follows the closing ']'")
    return spec[:start].strip(), parse_assignments(spec[start + 1:end])


def format_spec(name: str, overrides: dict[str, Any]) -> str:
    """Inverse of `parse_spec`: the display label of a configured learner or task."""
    if not overrides:
        return name
    body = ",".join(f"{k}={_fmt(v)}" for k, v in overrides.items())
    return f"{name}[{body}]"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
