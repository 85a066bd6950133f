"""What suite files say about their leaderboard plots, for the callers that know the suites.

The leaderboard renders from records alone and holds no paper knowledge; a suite file states
how its shift plots read (`[axes]`: shift group -> x-axis label; `ratio_reference`: the learner
the ratio panels divide by where the records name no single reference). A caller with a
catalog (the API's render, `publish`) reads them here and passes them to `board.render`:

    board.render(records, out, **plot_labels(catalog, {r["suite"] for r in records}))

A suite that is not registered (a `--task` run, a suite read from a path) has no labels: its
groups are labelled by their names and its ratio panels need the records' one reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Union

if TYPE_CHECKING:
    from iclbench.catalog import Catalog
    from iclbench.suite import SuiteFile, SuiteRegistry

Source = Union["Catalog", "SuiteRegistry"]


def registered_specs(source: Source, suites: Iterable[str]) -> dict[str, "SuiteFile"]:
    """suite -> its file (with the suites it includes resolved), for the registered ones of `suites`."""
    registry = getattr(source, "suites", source)  # a catalog, or its suite registry itself
    return {name: registry.spec(name) for name in sorted(set(suites)) if name in registry}


def suite_axes(source: Source, suites: Iterable[str]) -> dict[tuple[str, str], str]:
    """(suite, shift group) -> the x-axis label its suite file states, for the registered `suites`."""
    return {(name, group): label for name, spec in registered_specs(source, suites).items()
            for group, label in sorted(spec.axes.items())}


def suite_ratio_references(source: Source, suites: Iterable[str]) -> dict[str, str]:
    """suite -> the learner its shift plots divide by, where its file declares one."""
    return {name: spec.ratio_reference for name, spec in registered_specs(source, suites).items()
            if spec.ratio_reference}


def plot_labels(source: Source, suites: Iterable[str]) -> dict[str, Any]:
    """`board.render`'s `axes` and `ratio_references` for `suites`, from their files."""
    suites = sorted(set(suites))
    return {"axes": suite_axes(source, suites), "ratio_references": suite_ratio_references(source, suites)}
