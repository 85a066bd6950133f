"""What task isolation costs an evaluation (target: under 5 %): closed-form learners fitted and
scored on 10^5 tasks of every column of the `linear` suite, each learner call guarded (a
private, target-masked copy of its tasks, checked for writes) against the same evaluation
with the learners called directly.

    python benchmarks/isolation_overhead.py [--n-tasks 100000] [--repeats 3] [--device cpu]
        [--scoring-only]

After one warm-up run, the arms alternate (A, B, B, A, ...) so drift on a shared machine falls
on both; prints each repeat, the arms' medians and their ratio. `--scoring-only` times the scoring of one column
after fitting, per learner: the worst case, since fitting and sampling are left out.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

from iclbench import isolation, runner
from iclbench.catalog import default_catalog
from iclbench.config import parse_spec
from iclbench.isolation import guard as isolation_guard
from iclbench.runner import Evaluation, LearnerSpec, Plan
from iclbench.seeding import resolve_device
from iclbench.store import ResultStore

LEARNERS = ["zero", "averaging", "least-squares", "ridge", "gd", "gd[steps=2]", "knn"]


def direct(learner, who=None):
    """The learner itself, unguarded: the arm without isolation."""
    return learner


def whole_run(plan: Plan, guard) -> float:
    """Seconds of one fresh evaluation with `guard` applied to every learner (and reference)."""
    runner.guard = guard
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            Evaluation(default_catalog(), plan, ResultStore(out)).run()
            return time.perf_counter() - start
    finally:
        runner.guard = isolation_guard


def accounted(plan: Plan) -> tuple[float, float]:
    """(seconds inside the guard's own work, seconds of the whole guarded evaluation), one run:
    the copies and checks timed where they happen, free of the noise a difference of two runs has."""
    spent = [0.0]

    def timed(fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    saved = {name: getattr(isolation, name) for name in ("blind", "versions", "changed_field")}
    for name, fn in saved.items():
        setattr(isolation, name, timed(fn))
    try:
        total = whole_run(plan, isolation_guard)
    finally:
        for name, fn in saved.items():
            setattr(isolation, name, fn)
    return spent[0], total


def scoring(plan: Plan, repeats: int) -> None:
    """Per learner, the medians of scoring one column guarded and direct."""
    ev = Evaluation(default_catalog(), plan, ResultStore(tempfile.mkdtemp()))
    column = next(e for e in plan.suite.evals if e.in_distribution)
    episode, ref = ev.eval_tasks(column, 0)
    print(f"{'learner':16s} {'guarded s':>10s} {'direct s':>10s} {'ratio':>7s}")
    for learner in ev.learners:
        ev.fit(learner, 0)
        arms: dict[str, list[float]] = {"guarded": [], "direct": []}
        wrapped = {"guarded": isolation_guard(copy.copy(learner)), "direct": learner}  # the same fit, shallow copies
        for i in range(repeats):
            for arm in (("guarded", "direct") if i % 2 == 0 else ("direct", "guarded")):
                start = time.perf_counter()
                ev.measure(wrapped[arm], episode, ref, False, column.task)
                arms[arm].append(time.perf_counter() - start)
        g, d = statistics.median(arms["guarded"]), statistics.median(arms["direct"])
        print(f"{learner.label:16s} {g:10.4f} {d:10.4f} {g / d:7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tasks", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scoring-only", action="store_true")
    args = ap.parse_args()
    cat = default_catalog()
    plan = Plan([LearnerSpec(*parse_spec(n)) for n in LEARNERS], cat.suites.load("linear", cat), [0],
                n_tasks=args.n_tasks, device=resolve_device(args.device))
    if args.scoring_only:
        scoring(plan, args.repeats)
        return
    whole_run(plan, direct)  # warm-up: first-touch allocations and lazy imports fall on neither arm
    arms: dict[str, list[float]] = {"guarded": [], "direct": []}
    for i in range(args.repeats):
        order = (("guarded", isolation_guard), ("direct", direct), ("direct", direct), ("guarded", isolation_guard))[2 * (i % 2):][:2]
        for arm, guard in order:
            arms[arm].append(whole_run(plan, guard))
            print(f"repeat {i}: {arm} {arms[arm][-1]:.2f} s", flush=True)
    g, d = statistics.median(arms["guarded"]), statistics.median(arms["direct"])
    paired = statistics.median(a / b for a, b in zip(arms["guarded"], arms["direct"]))  # each repeat's own pair
    guard_s, total_s = accounted(plan)
    print(f"{', '.join(LEARNERS)} on {args.n_tasks} tasks of every `linear` column ({plan.device}): "
          f"guarded {g:.3f} s, direct {d:.3f} s (medians of {args.repeats}), ratio {g / d:.3f}; "
          f"median of paired ratios {paired:.3f}; the guard's own work {guard_s:.3f} s of {total_s:.3f} s "
          f"({100 * guard_s / total_s:.1f} %)")


if __name__ == "__main__":
    main()
