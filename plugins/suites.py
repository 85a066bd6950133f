"""The built-in suites, shipped as TOML data in the `tasks/` folder of the source tree."""

from __future__ import annotations

from importlib.resources import files

import iclbench


@iclbench.hookimpl
def register_suites(register) -> None:
    register(files("iclbench_plugins") / "suites_data")
