"""Name -> object registries: the lowest layer above the component interfaces.

Duplicate names are an error naming both plugins; unknown names suggest the closest. The
registry knows no particular kind: `iclbench.catalog` fills one per hook.
"""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from iclbench.config import StrictConfig
from iclbench.errors import UsageError

T = TypeVar("T")


class UnknownNameError(UsageError, LookupError):
    """A learner, task or suite name that no plugin registered (a usage error, and a LookupError)."""

    def __str__(self) -> str:  # KeyError-style quoting would hide the suggestion
        return str(self.args[0])


class DuplicateNameError(UsageError):
    """Two plugins registered the same name (a usage error)."""


class RegistrationError(UsageError, TypeError):
    """A plugin registered something that is not what the hook takes (a usage error naming the
    plugin; still a TypeError for callers that caught one before)."""


def unknown(kind: str, name: str, choices: list[str]) -> UnknownNameError:
    """The error for an unknown name, suggesting the closest registered one."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(sorted(choices)) or "none registered"
    return UnknownNameError(f"unknown {kind} {name!r}{hint} (available: {listed})")


class Registry(Generic[T]):
    """Registered objects of one kind, keyed by name, remembering which plugin owns each."""

    def __init__(self, kind: str, strict: bool = True) -> None:
        self.kind = kind
        self.strict = strict  # False: a second registration of a name is kept aside as a clash
        self._items: dict[str, tuple[T, str]] = {}
        self.clashes: list[DuplicateNameError] = []

    def add(self, name: str, obj: T, plugin: str) -> None:
        if name in self._items:
            other = self._items[name][1]
            err = DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}"
            )
            if self.strict:
                raise err
            self.clashes.append(err)
            return
        self._items[name] = (obj, plugin)

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise unknown(self.kind, name, list(self._items))
        return self._items[name][0]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def owner(self, name: str) -> str:
        self[name]
        return self._items[name][1]


def public_name(cls: type) -> str:
    """`iclbench.Learner` for a class the package exports, else its module path."""
    import iclbench

    return f"iclbench.{cls.__name__}" if cls.__name__ in iclbench.__all__ else f"{cls.__module__}.{cls.__qualname__}"


def checked_class(kind: str, base: type, cls: object, plugin: str) -> type:
    """Reject registrations that would fail later with a confusing error: a RegistrationError
    naming the plugin, what it registered and what was expected."""
    where = f"plugin {plugin!r} registered {cls!r} as {'an' if kind[:1] in 'aeiou' else 'a'} {kind}"
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise RegistrationError(f"{where}, but it is not a subclass of {public_name(base)}")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise RegistrationError(f"{where}, but it has no string `name`")
    config = getattr(base, "Config", StrictConfig)
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, config)):
        raise RegistrationError(f"{where}, but its Config does not subclass {public_name(config)}")
    return cls
