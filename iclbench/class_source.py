"""The digest of a class no file holds (one defined in a notebook): its source where `inspect`
finds it, else its compiled code, so an edited class is never taken for the one before."""

from __future__ import annotations

import hashlib
import inspect
import json
import types
from typing import Any


def _code_text(code: types.CodeType) -> list[Any]:
    """What a code object computes, nested functions and comprehensions included."""
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, list(code.co_names), list(code.co_varnames), code.co_argcount]


def _member_text(value: Any) -> Any:
    """A class member as text: functions by their code, properties and static/class methods by
    theirs, nested classes (a Config) recursively, other values by repr."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return [_member_text(f) for f in (value.fget, value.fset, value.fdel) if f is not None]
    if isinstance(value, types.FunctionType):
        return [_code_text(value.__code__), repr(value.__defaults__), repr(value.__kwdefaults__)]
    if isinstance(value, type):
        return _class_text(value)
    return repr(value)


def _class_text(cls: type) -> Any:
    """A class's own members (not inherited from installed code) and, for a pydantic config,
    its schema (field names, types, defaults)."""
    members = {k: _member_text(v) for k, v in sorted(vars(cls).items())
               if not (k.startswith("__") and k.endswith("__")) and not k.startswith("_abc")}
    schema = None
    if hasattr(cls, "model_json_schema"):
        try:
            schema = cls.model_json_schema()
        except Exception:  # a schema pydantic cannot render: the members still count
            schema = None
    return {"name": cls.__qualname__, "bases": [f"{b.__module__}.{b.__qualname__}" for b in cls.__bases__],
            "members": members, "schema": schema}


def source_digest(cls: type) -> str:
    """The digest of a class no file holds: its source where `inspect` finds it, else its
    compiled code (every method's bytecode and constants), for it and for the session classes
    it derives from."""
    parts = []
    for klass in cls.__mro__:
        if klass.__module__ != cls.__module__:
            continue  # installed code: covered by its own digest (core, plugins)
        try:
            parts.append(inspect.getsource(klass))
        except (OSError, TypeError):
            parts.append(json.dumps(_class_text(klass), sort_keys=True, default=repr))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
