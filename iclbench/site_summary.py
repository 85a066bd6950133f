"""The site's answers to "who is best, by how much, and is it significant" (`site`).

- `standings_table`: one column's learners ranked by its headline metric (`ranking`), mean ±
  CI, the gap to the best, the best in bold, the learners statistically tied with it marked,
  heavy-tailed rows flagged with their median;
- `pivot_table`: learners x the shifts of one OOD group, each cell coloured by the learner's
  rank within its shift (a rank, not a ratio: an exact learner at 1e-15 would make every ratio
  scale red).
Numbers come from the records through `ranking`; nothing here is typed in.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from iclbench.metric_registry import metric as registered
from iclbench.ranking import Standing, by_learner, headline_metric, standings, summary
from iclbench.site_html import esc, table, td, th



def direction(name: str) -> str:
    """A metric's human label with its direction: `loss (lower is better)`."""
    m = registered(name)
    return f"{m.shown} ({'lower' if m.lower_is_better else 'higher'} is better)"


def number(x: float | None, fmt: str = ".4g") -> str:
    return "" if x is None else format(x, fmt)


def mean_text(s: Standing, name: str) -> str:
    if s.status != "ok":
        return s.status
    return registered(name).text(s.mean, math.nan if s.ci95 is None else s.ci95)


def verdict_text(s: Standing) -> tuple[str, str]:
    """What the test against the best says, and the row's class."""
    if s.best:
        return "best", "best"
    if s.status != "ok":
        return "", ""
    if s.tied is None:
        return "untested", ""
    p = f"p {'< 0.001' if s.p_holm < 1e-3 else f'= {s.p_holm:.2g}'}" + ("" if s.test == "seeds" else f", {s.test}")
    return (f"tied ({p})", "tied") if s.tied else (f"worse ({p})", "")


RATIO_SHOWN = 1000.0  # past this many times the best, a ratio says nothing (the best is about 0)


def gap_text(s: Standing) -> tuple[str, float | None]:
    """The difference to the best in the metric's units (positive: worse), with the ratio where it
    means something: `+0.0123 (+8.1 %)`, `+0.5 (12x)`."""
    if s.gap is None:
        return "", None
    if s.best:
        return "0", 0.0
    text = f"{s.gap:+.3g}"
    if s.ratio is not None and s.ratio <= 10:
        text += f" ({s.ratio - 1:+.1%})"
    elif s.ratio is not None and s.ratio <= RATIO_SHOWN:
        text += f" ({s.ratio:.0f}x)"
    return text, s.gap


def standings_table(rows: Sequence[Standing], name: str, ranks: Sequence[int] | None = None) -> str:
    """Rank, learner, mean ± CI, median (heavy tails flagged), gap to the best, the test against it, seeds."""
    medians = any(s.median is not None for s in rows)
    head = [th("#"), th("learner"), th(direction(name), name)] + ([th("median")] if medians else []) + \
        [th("worse than the best by"), th("against the best"), th("seeds")]
    out = []
    for i, s in zip(ranks or range(1, len(rows) + 1), rows):
        verdict, cls = verdict_text(s)
        gap, gap_sort = gap_text(s)
        median = number(s.median) + (" (heavy-tailed)" if s.heavy_tail else "")
        learner = f"<strong>{esc(s.learner)}</strong>" if s.best else esc(s.learner)
        out.append([td(i, i), td(learner, cls=cls, raw=True),
                    td(mean_text(s, name), s.mean if s.status == "ok" else None, cls=cls)]
                   + ([td(median, s.median, cls="heavy" if s.heavy_tail else "")] if medians else [])
                   + [td(gap, gap_sort), td(verdict, cls=cls), td(s.seeds, s.seeds)])
    return table(head, out)


def column_standings(records: list[dict[str, Any]], root=None) -> tuple[str, list[Standing]]:
    """A column's headline metric and its standings."""
    name = headline_metric(records)
    return name, standings(records, name, root)


def shift_order(records: list[dict[str, Any]]) -> list[str]:
    """A group's shifts (task labels) by their value where numeric, else by label."""
    values: dict[str, Any] = {}
    for r in records:
        values.setdefault(r["task_label"], r.get("value"))

    def key(label: str) -> tuple:
        v = values[label]
        return (0, float(v), label) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, label)

    return sorted(values, key=key)


def shade(rank: int, n: int) -> str:
    """A cell's background for its `rank` (0: best) among `n` finished learners of its shift:
    green for the best through yellow to red for the worst."""
    t = rank / (n - 1) if n > 1 else 0.0
    return f"background: hsl({120 * (1 - t):.0f}, 65%, 82%)"


def shift_title(records: list[dict[str, Any]], label: str) -> str:
    """A pivot column's header: the shift's value where the records carry one, else its label."""
    v = next((r.get("value") for r in records if r["task_label"] == label), None)
    return label if v is None or isinstance(v, bool) else str(v)


def pivot_table(records: list[dict[str, Any]], learners: Sequence[str], name: str) -> str:
    """Learners (in `learners`' order) x the group's shifts: the mean of `name` over seeds, coloured
    by its rank within the shift in the metric's direction."""
    shifts = shift_order(records)
    by_shift = {s: by_learner([r for r in records if r["task_label"] == s]) for s in shifts}
    means = {s: {k: summary(k, seeds, name) for k, seeds in group.items()} for s, group in by_shift.items()}
    lower = registered(name).lower_is_better
    ranks = {}
    for s in shifts:
        finished = sorted((x.mean if lower else -x.mean, k) for k, x in means[s].items() if x.status == "ok")
        ranks[s] = {k: i for i, (_, k) in enumerate(finished)}
    head = [th("learner")] + [th(shift_title(records, s)) for s in shifts]
    rows = []
    for learner in learners:
        cells = [td(learner)]
        for s in shifts:
            x = means[s].get(learner)
            if x is None:
                cells.append(td(""))
            elif x.status != "ok":
                cells.append(td(x.status, cls="no"))
            else:
                cells.append(td(number(x.mean), x.mean, style=shade(ranks[s][learner], len(ranks[s]))))
        rows.append(cells)
    return table(head, rows)


SCALE_NOTE = ("Cells: the mean over seeds; colour: the learner's rank within its shift (column), green for the "
              "best through yellow to red for the worst. Every shift's full table, with CIs, is under Every column.")
