"""What the running parts of the core need of the catalog, as a protocol: the registries by
kind and where a name's code came from. The catalog (`iclbench.catalog.Catalog`) collects
every plugin and so sits above the runner, suites and executors; they name this protocol
instead, so no arrow points back up at it.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol


class CatalogView(Protocol):
    """The registries of a built catalog (each maps a registered name to its class or file)."""

    learners: Mapping[str, Any]
    tasks: Mapping[str, Any]
    suites: Any  # iclbench.suite.SuiteRegistry
    analyses: Mapping[str, Any]
    reproductions: Mapping[str, Any]
    trackers: Mapping[str, Any]
    executors: Mapping[str, Any]

    def provenance(self, kind: str, name: str) -> dict[str, Any]:
        """Where the code of learner or task `name` comes from (plugin, source, digests)."""
