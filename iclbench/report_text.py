"""The words a board and a site share: what a ± means, and the findings and deviations tables'
titles, headers and rows. The Markdown (`publish`, `tables`) and HTML (`site`, `site_tables`)
renderers format these; neither writes its own copy.
"""

from __future__ import annotations

from typing import Iterable, Sequence

CI_OVER_SEEDS = "95 % CI over seeds (Student t)"
CI_OVER_TASKS = "95 % CI over evaluation tasks"
CI_MIXED = "95 % CI over seeds (Student t) in cells with several seeds, over evaluation tasks in 1-seed cells"

PAIRED_NOTE = ("Comparisons are paired: Δ is a learner's loss minus its reference's on the same tasks, mean over "
               "seeds ± 95 % CI (Student t over seeds), then relative to the reference's loss. Tolerances are fixed "
               "in the claim.")
VERDICT_NOTE = ("A claim holds when its interval lies inside the tolerance, does not hold when it lies outside, "
                "and is inconclusive when it crosses it; the reason beside a claim that does not hold or is "
                "inconclusive is computed from the records.")
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


def finding_rows(findings: Sequence) -> list[tuple[int, str, str, bool | None, str]]:
    """(number, claim, ours, holds, why) per finding, numbered from 1 as both renderers show them;
    holds is True, False or None (inconclusive)."""
    return [(i, f.claim, f.ours, None if f.holds is None else bool(f.holds), f.why) for i, f in enumerate(findings, 1)]


def deviation_rows(deviations: Sequence) -> list[tuple[str, str, str, str]]:
    """(what, paper, ours, why) per declared deviation from the paper."""
    return [(d.what, d.paper, d.ours, d.why) for d in deviations]
