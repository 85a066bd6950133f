"""Shared fixtures: the built-in catalog and the default linear-regression task."""

from __future__ import annotations

import pytest

from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog


@pytest.fixture(scope="session")
def catalog():
    """Every installed entry-point plugin (the built-ins), built once."""
    return build_catalog(make_plugin_manager())


@pytest.fixture(scope="session")
def linear(catalog):
    """The paper's default task: N = d = 10, dy = 1, x ~ U(-0.5, 0.5), W ~ N(0, I)."""
    return catalog.tasks["linear-regression"]()
