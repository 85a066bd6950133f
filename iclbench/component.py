"""What learners and tasks share: a registry name and a validated pydantic Config."""

from __future__ import annotations

from typing import Any, ClassVar

from iclbench.config import StrictConfig, build_config, format_spec


class Configurable:
    """A named plugin component built from its `Config`; `label` shows non-default fields."""

    name: ClassVar[str]
    Config: ClassVar[type[StrictConfig]] = StrictConfig
    kind: ClassVar[str] = "component"

    def __init__(self, config: StrictConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if isinstance(config, StrictConfig):
            if not isinstance(config, self.Config):
                raise TypeError(
                    f"{self.kind} {self.name!r} expects a {self.Config.__name__}, "
                    f"got {type(config).__name__}"
                )
            values = {**config.model_dump(), **overrides}
        else:
            values = {**(config or {}), **overrides}
        self.config = build_config(self.Config, values, owner=f"{self.kind} {self.name!r}")

    @property
    def label(self) -> str:
        """`name` or `name[field=value,...]` for the fields that differ from the defaults."""
        return format_spec(self.name, self.config.overrides())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"
