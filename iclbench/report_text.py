"""The words a board and a site share: what a ± means, and the findings and deviations tables'
titles, headers and rows. The Markdown (`publish`, `tables`) and HTML (`site`, `site_tables`)
renderers format these; neither writes its own copy.
"""

from __future__ import annotations

from typing import Iterable, Sequence

CI_OVER_SEEDS = "95 % CI over seeds (Student t)"
CI_OVER_TASKS = "95 % CI over evaluation tasks"
CI_MIXED = "95 % CI over seeds (Student t) in cells with several seeds, over evaluation tasks in 1-seed cells"

FINDINGS_HEAD = ("#", "claim", "ours", "holds", "why not, or what to know")
NO_FINDINGS = "This reproduction states no findings."
DEVIATIONS_TITLE = "Deviations from the paper"
DEVIATIONS_HEAD = ("what", "paper (text or reference code)", "ours", "why")


def ci_note(over: Iterable[str]) -> str:
    """What the ± under a heading means, from what each cell's CI is over ("seeds" or "tasks");
    no cell with a CI reads as over tasks."""
    over = set(over)
    if over == {"seeds"}:
        return CI_OVER_SEEDS
    if over <= {"tasks"}:
        return CI_OVER_TASKS
    return CI_MIXED


def finding_rows(findings: Sequence) -> list[tuple[int, str, str, bool, str]]:
    """(number, claim, ours, holds, why) per finding, numbered from 1 as both renderers show them."""
    return [(i, f.claim, f.ours, bool(f.holds), f.why) for i, f in enumerate(findings, 1)]


def deviation_rows(deviations: Sequence) -> list[tuple[str, str, str, str]]:
    """(what, paper, ours, why) per declared deviation from the paper."""
    return [(d.what, d.paper, d.ours, d.why) for d in deviations]
