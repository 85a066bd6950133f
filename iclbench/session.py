"""Learners defined in a session (a notebook, a script): evaluated without packaging them.

`iclbench.evaluate([MyLearner, MyLearner(steps=3), "gd"], ...)` takes `Learner` subclasses and
instances beside spec strings. Their classes are registered for that call as one plugin,
`session`, and their code is digested from the class itself (`codehash.class_digest` falls
back to `class_source.source_digest` where no file holds it), so a record is reused only for the same code,
as for a `--plugin` file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iclbench.hookspecs import hookimpl
from iclbench.learner import Learner

SESSION_PLUGIN = "session"


def split_learners(items: str | Sequence[Any], option: str) -> tuple[str | list[str], list[type[Learner]]]:
    """Spec strings for `items` (strings kept; a class by its name; an instance by its label)
    and the session classes among them, each once. Anything else is an error naming `option`."""
    if isinstance(items, str):
        return items, []
    specs: list[str] = []
    classes: list[type[Learner]] = []
    for item in items:
        if isinstance(item, str):
            specs.append(item)
            continue
        cls = item if isinstance(item, type) else type(item)
        if not (isinstance(cls, type) and issubclass(cls, Learner)) or cls is Learner:
            raise TypeError(f"{option}: expected learner specs (str), Learner subclasses or instances, "
                            f"got {item!r}")
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            raise TypeError(f"{option}: learner class {cls.__qualname__} needs a `name` (a str class attribute)")
        if cls not in classes:
            classes.append(cls)
        specs.append(cls.name if isinstance(item, type) else item.label)
    return specs, classes


class SessionPlugin:
    """The plugin that registers a call's session learners."""

    def __init__(self, classes: Sequence[type[Learner]]) -> None:
        self.classes = list(classes)

    @hookimpl
    def register_learners(self, register) -> None:
        for cls in self.classes:
            register(cls)
