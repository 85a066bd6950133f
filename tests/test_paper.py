"""The paper's claim checks, on hand-made records."""

from __future__ import annotations

from iclbench_plugins.paper import Paper


class FakeResults:
    def __init__(self, analyses: dict[str, list[dict]]) -> None:
        self.analyses = analyses

    def analysis(self, name: str) -> list[dict]:
        return self.analyses.get(name, [])

    def mean(self, spec: str, suite: str, *args, **kwargs) -> float:
        raise LookupError(f"no loss for {spec!r} on {suite}")

    records: list[dict] = []


def repeated(trained_median: list[float]) -> dict:
    gd = [0.2, 0.1, 0.05]
    return {"loss": {"trained": [0.2, 0.1, 9.0], "gd": [0.2, 0.1, 7.0]},  # means ruined by a diverging task
            "median_loss": {"trained": trained_median, "gd": gd},
            "diverged_tasks": {"trained": 1, "gd": 2}, "tasks": 100}


def test_repeated_claim_is_decided_on_the_median_task_at_every_step():
    ours, holds = Paper.repeated(FakeResults({"repeated": [repeated([0.2, 0.1, 0.052])]}))
    assert holds and "median task after 3 steps 0.0520 vs GD 0.0500" in ours and "1 and 2 of 100 tasks ending above their first-step loss" in ours
    ours, holds = Paper.repeated(FakeResults({"repeated": [repeated([0.2, 0.12, 0.05])]}))  # 20 % off at step 2
    assert not holds and "worst step 20.0%" in ours


def test_missing_analysis_is_reported_not_dropped():
    findings = Paper().findings(FakeResults({}))
    assert len(findings) == 10 and not any(f.holds for f in findings)
    assert findings[6].ours.startswith("missing: no repeated-application analysis")
