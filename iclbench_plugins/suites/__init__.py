"""The built-in suites: the TOML files in this folder (data, not code), registered as they are."""

from __future__ import annotations

from importlib.resources import files

import iclbench


@iclbench.hookimpl
def register_suites(register) -> None:
    register(files("iclbench_plugins.suites"))
