"""Every metric the report layer knows, in one place: its name, which way is better, a human
label, how its numbers are written, whether the tables key it by a reference learner, and how
its `_ci95` companion is named.

The leaderboard's Markdown, CSV and JSON (`tables`), the aggregation (`cells`), the HTML site
(`site_tables`) and the plots (`shift_plots`, `prefix_plot`) read this registry rather than
lists of their own, so a metric is added or relabelled here once. The registry describes what
the published files already show: where leaderboard.md prints a raw metric name
(`sens_cos against gd`) it still does, and a metric without a `label` is shown by its name.

`kind` says where a metric sits in the tables: `loss` (the table of every shift group and the
ranking), `score` (a table per group under its `heading`), `paired` (this learner's `of` minus
the reference's, on the same tasks) and `alignment` (against the reference); these come in
registry order in the CSV / JSON rows. `extra` metrics (robust losses, per-position means) have
no Markdown table and come after the others by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

CI_SUFFIX = "_ci95"  # `loss_ci95` is the 95 % CI half-width of `loss`
RANK_BY = "loss"  # the metric the Markdown tables rank learners by
HEADLINE = ("position_loss", "loss")  # a column's headline metric: the first of these its records have
PLACED = ("loss", "score", "paired", "alignment")  # kinds with a fixed place among a cell's rows


@dataclass(frozen=True)
class Metric:
    """One metric of the records' `metrics`."""

    name: str
    kind: str = "extra"
    label: str | None = None  # human label (the site's column header); None: shown by its name
    lower_is_better: bool = True
    referenced: bool = False  # keyed by the record's reference (`align_to`) in the tables
    heading: str = ""  # the Markdown title of its tables (kind loss and score)
    axis: str = ""  # a plot's axis label; `{ref}` stands for the reference learner
    of: str = ""  # a paired metric: the metric it is the difference of
    mean_format: str = ".4g"
    ci_format: str = ".2g"

    @property
    def ci(self) -> str:
        """The name of its 95 % CI companion."""
        return self.name + CI_SUFFIX

    @property
    def shown(self) -> str:
        """Its label, else its name."""
        return self.label or self.name

    def text(self, mean: float, ci: float) -> str:
        """`mean ± ci` in its formats; `mean` alone without a CI; nothing without a mean."""
        if math.isnan(mean):
            return ""
        return format(mean, self.mean_format) if math.isnan(ci) else \
            f"{format(mean, self.mean_format)} ± {format(ci, self.ci_format)}"


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("loss", "loss", "loss", heading="Loss 0.5·‖ŷ − y‖² on the query", axis="query loss"),
    Metric("position_loss", "score", "loss over positions", heading="mean loss over positions (sequence tasks)",
           axis="loss of predicting s_t+1 (0.5 squared error)"),
    Metric("accuracy", "score", "sign accuracy", lower_is_better=False,
           heading="accuracy of the prediction's sign (classification tasks)"),
    Metric("loss_diff", "paired", "Δ loss (paired)", referenced=True, of="loss"),
    Metric("position_loss_diff", "paired", "Δ loss over positions (paired)", referenced=True, of="position_loss"),
    Metric("pred_diff", "alignment", "prediction difference", referenced=True),
    Metric("sens_cos", "alignment", "sensitivity cosine", lower_is_better=False, referenced=True),
    Metric("sens_diff", "alignment", "sensitivity difference", referenced=True),
    Metric("loss_median", label="median loss"),
    Metric("loss_trimmed", label="trimmed-mean loss"),
    # Measured against the record's reference, but the tables list them among the scores (the
    # published tables do): not keyed by it.
    Metric("position_pred_diff", label="prediction difference over positions", axis="|prediction - {ref}'s|"),
    Metric("position_sens_cos", label="sensitivity cosine over positions", lower_is_better=False,
           axis="cosine of input sensitivities with {ref}'s"),
)}


def metric(name: str) -> Metric:
    """The registered metric `name`; an unknown one is an `extra`, shown by its name, lower better."""
    return REGISTRY.get(name) or Metric(name)


def headline(names: Iterable[str]) -> str:
    """The metric a column is judged by (the site's ranking, the shift plots): the loss over
    positions where there is one (sequence tasks, whose claims use it), else the query loss."""
    present = set(names)
    return next((m for m in HEADLINE if m in present), HEADLINE[-1])


def of_kind(*kinds: str) -> list[Metric]:
    """The registered metrics of `kinds`, in registry order."""
    return [m for m in REGISTRY.values() if m.kind in kinds]


def referenced() -> list[str]:
    """The metrics keyed by a reference, in registry order (the Markdown's comparison tables)."""
    return [m.name for m in REGISTRY.values() if m.referenced]


def row_rank(name: str) -> int:
    """Its place among a cell's CSV / JSON rows: placed kinds in registry order, then the rest
    (ties broken by name)."""
    placed = [m.name for m in of_kind(*PLACED)]
    return placed.index(name) if name in placed else len(placed)


def is_ci(name: str) -> bool:
    """Whether `name` is a `_ci95` companion rather than a metric."""
    return name.endswith(CI_SUFFIX)


def own_metrics(metrics: dict[str, object]) -> Iterator[str]:
    """The metric names of a record's `metrics`, without their CI companions."""
    return (m for m in metrics if not is_ci(m))


def rank_key(learner: str, status: str | None, mean: float | None, name: str = RANK_BY) -> tuple:
    """How a learner's cell of metric `name` ranks: finished cells first, best first in the
    metric's direction, then diverged ones, then failed, missing or non-finite ones; ties by
    the learner's name."""
    if status is None or status == "failed" or mean is None or not math.isfinite(mean):
        return (2, 0.0, learner)
    sign = 1.0 if metric(name).lower_is_better else -1.0
    return (0 if status == "ok" else 1, sign * mean, learner)
