"""Strict pydantic configs shared by learners and tasks, and `key=value` override parsing.

Configs reject unknown fields so a misspelt option fails loudly, naming the field.
"""

from __future__ import annotations

import tomllib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictConfig(BaseModel):
    """Base of every learner and task config: unknown fields are errors, values validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def overrides(self) -> dict[str, Any]:
        """Fields that differ from the class defaults, in declaration order; nested configs
        contribute dotted keys (`train.steps`)."""
        defaults = type(self)()
        out: dict[str, Any] = {}
        for k in type(self).model_fields:
            mine, default = getattr(self, k), getattr(defaults, k)
            if isinstance(mine, StrictConfig) and type(mine) is type(default):
                out.update({f"{k}.{sub}": v for sub, v in mine.overrides().items()})
            elif mine != default:
                out[k] = mine.model_dump() if isinstance(mine, BaseModel) else mine
        return out


class ConfigError(ValueError):
    """A config could not be built; the message names the owner, field and value."""


def build_config(cls: type[StrictConfig], values: dict[str, Any], owner: str) -> StrictConfig:
    """Validate `values` against `cls`; re-raise pydantic's message prefixed with `owner`."""
    try:
        return cls(**values)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "<config>"
            lines.append(f"  {field}: {e['msg']} (got {e.get('input')!r})")
        raise ConfigError(f"invalid config for {owner}:\n" + "\n".join(lines)) from None


def parse_value(text: str) -> Any:
    """Parse one override value as TOML (`2`, `true`, `[1, 2]`, `"a"`), else keep the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets, so `gd[steps=2,per_step=true],zero` has two items."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


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
    """Parse `name` or `name[key=value,...]` into the name and its overrides."""
    spec = spec.strip()
    if spec.endswith("]") and "[" in spec:
        name, body = spec[:-1].split("[", 1)
        return name.strip(), parse_assignments(body)
    return spec, {}


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
