"""How the paper's claims read the records: intervals of paired differences and cosines over
seeds, decided by `iclbench.verdicts`, and per-seed numbers for the reasons."""

from __future__ import annotations

from iclbench.plugin_api import (above, across_seeds, below, Finding, Paired, Results, trend, Verdict, verdict_label,
                                  within)


def found(ours: str, verdict: Verdict) -> Finding:
    """A finding (its claim text filled in by `Reproduction.check`) from our numbers and verdict."""
    return Finding("", ours, verdict.holds, verdict.why)


def close(p: Paired, tol: float, what: str) -> Verdict:
    """The paired relative difference within ±tol, on its interval."""
    return within(p.rel, p.rel_ci, tol, p.seeds, what)


def seed_differences(r: Results, spec: str, reference: str, suite: str) -> dict[int, tuple[float, float]]:
    """seed -> its paired loss difference relative to the reference's loss, and its CI over tasks."""
    out = {}
    for s, x in r.records_by_seed(spec, suite, align_to=reference).items():
        m = x["metrics"]
        ref_loss = m["loss"] - m["loss_diff"]
        out[s] = (m["loss_diff"] / ref_loss, m.get("loss_diff_ci95", 0.0) / ref_loss)
    return out


def per_seed(r: Results, spec: str, reference: str, suite: str) -> str:
    """Each seed's paired difference relative to the reference's loss, with its CI over tasks."""
    return "per seed " + ", ".join(f"seed {s}: {rel:+.0%} ± {ci:.0%}"
                                   for s, (rel, ci) in seed_differences(r, spec, reference, suite).items())


def cosine_above(cos: tuple[float, float, int], bound: float, what: str) -> Verdict:
    """A cosine's interval (`interval`) above `bound`."""
    return above(cos[0], cos[1], bound, cos[2], what, unit=num)


def cosine_below(cos: tuple[float, float, int], bound: float, what: str) -> Verdict:
    return below(cos[0], cos[1], bound, cos[2], what, unit=num)


def num(x: float) -> str:
    return f"{x:.4f}"


def interval(r: Results, spec: str, suite: str, metric: str, align_to: str | None) -> tuple[float, float, int]:
    """`metric`'s mean over seeds, its 95 % CI (Student t over seeds; one seed: its own CI over
    tasks, if recorded) and the number of seeds."""
    recs = r.records_by_seed(spec, suite, align_to=align_to).values()
    means = [x["metrics"][metric] for x in recs if metric in x["metrics"]]
    if not means:
        raise LookupError(f"no {metric!r} for {spec!r} on {suite}")
    cis = [x["metrics"].get(f"{metric}_ci95", 0.0) for x in recs if metric in x["metrics"]]
    mean, ci = across_seeds(means, cis)
    return mean, ci, len(means)


def budget_note(r: Results, spec: str, suite: str = "linear") -> str:
    """The seeds of `spec` whose held-out loss was still falling when training stopped (empty if
    none): a claim that does not hold on such a model may be the budget's, not the model's."""
    falling = {s: t for s, c in r.curves(spec, suite).items() if (t := trend(c)) and t.still_falling}
    if not falling:
        return ""
    return f"{spec}: " + "; ".join(f"seed {s} {t.text()}" for s, t in falling.items()) + ", so the budget may be the cause"


def with_budget_notes(v: Verdict, r: Results, specs: list[str], suite: str = "linear") -> Verdict:
    """`v`, its reason extended by `budget_note` of each spec when the claim does not hold."""
    if v.holds is True:
        return v
    notes = [n for n in (budget_note(r, s, suite) for s in specs) if n]
    return Verdict(v.holds, "; ".join([v.why] * bool(v.why) + notes))


def seed_verdicts(r: Results, spec: str, reference: str, suite: str, tol: float, test=within) -> str:
    """Each seed's own verdict on its paired difference (relative, CI over its tasks), beside
    the pooled one: `test` is `within` (|x| < tol) or `above` (x > tol)."""
    return "per seed: " + ", ".join(f"seed {s} {verdict_label(test(rel, ci, tol, 1, '').holds)}"
                                    for s, (rel, ci) in seed_differences(r, spec, reference, suite).items())


ZEROED = {"kq": "W_KQ's label row and column", "pv": "W_PV's x <-> y blocks", "both": "both"}


def label_coupling_note(r: Results, spec: str, columns: list[str]) -> str:
    """What the `label-coupling` ablation says of `spec`'s gap to its construction on `columns`:
    the share of the gap each zeroing closes, over the seeds it ran on (empty without it)."""
    runs = [x for x in r.analysis("label-coupling") if x.get("learner") == r.label(spec)]
    parts = []
    for col in columns:
        rows = [x["tasks"][col] for x in runs if col in x["tasks"]]
        if not rows:
            continue
        mean = {k: sum(row[k] for row in rows) / len(rows) for k in ("construction", "trained", *ZEROED)}
        gap = mean["trained"] - mean["construction"]
        if gap <= 0:
            continue
        closed = ", ".join(f"{what} {1 - (mean[k] - mean['construction']) / gap:.0%}" for k, what in ZEROED.items())
        parts.append(f"{col}: zeroing {closed} of the gap")
    if not parts:
        return ""
    return f"label-coupling ablation ({len(runs)} seed(s)), share of the gap to the construction closed by " + "; ".join(parts)


def reference_lost(r: Results, p: Paired, task: str) -> bool:
    """Whether the reference's loss on a linear-ood column is at or above the zero predictor's
    there (both scored against GD-1 on the same tasks); False where zero was not scored."""
    try:
        zero = r.values("zero", "linear-ood", task, align_to="gd")
    except LookupError:
        return False
    return p.reference_loss >= sum(zero) / len(zero)
