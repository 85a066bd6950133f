"""Up-front workload estimates: absurd budgets are refused with a one-line message, defaults never."""

from __future__ import annotations

import re

import pytest

from iclbench.config import parse_spec
from iclbench.workload import (TaskShape, WorkloadError, check_workloads, format_bytes, suite_items,
                               task_shape)

GIB = 2**30
LIMIT = 24 * GIB
MEMORY_FIGURE = re.compile(r"\d+(\.\d+)? [KMGTP]iB")


def build(catalog, spec: str):
    """A learner from a command-line spec, parsed as `--learners` parses it."""
    name, overrides = parse_spec(spec)
    return catalog.learners[name](overrides)


@pytest.fixture(scope="module")
def shapes(catalog) -> dict[str, TaskShape]:
    return {name: task_shape(catalog.tasks[name]()) for name in ("linear-regression", "alternating", "sine")}


def refusal(catalog, spec: str, shape: TaskShape) -> str:
    with pytest.raises(WorkloadError) as info:
        check_workloads([(build(catalog, spec), shape)], memory_limit=LIMIT)
    return str(info.value)


def test_a_billion_gd_steps_are_refused_naming_learner_memory_and_the_override(catalog, shapes):
    msg = refusal(catalog, "gd[steps=1e9]", shapes["linear-regression"])
    assert "gd[steps=1000000000]" in msg
    assert MEMORY_FIGURE.search(msg) and "24.0 GiB" in msg
    assert "steps=1000000000 x tune_tasks=10000 tasks" in msg
    assert "--allow-large" in msg
    assert "\n" not in msg


def test_allow_large_lets_it_through(catalog, shapes):
    (w,) = check_workloads([(build(catalog, "gd[steps=1e9]"), shapes["linear-regression"])],
                           memory_limit=LIMIT, allow_large=True)
    assert w.peak_bytes > LIMIT


def test_a_huge_training_batch_is_refused(catalog, shapes):
    msg = refusal(catalog, "lsa[train.batch_size=100000000]", shapes["linear-regression"])
    assert msg.startswith("lsa[train.batch_size=100000000] needs about")
    assert "train.batch_size=100000000 tasks" in msg and "--allow-large" in msg


def test_a_training_longer_than_a_week_is_refused(catalog, shapes):
    msg = refusal(catalog, "lsa[train.steps=1e9]", shapes["linear-regression"])
    assert "of compute" in msg and "days" in msg and "--allow-large" in msg


@pytest.mark.parametrize("task", ["linear-regression", "alternating", "sine"])
def test_every_builtin_learner_at_its_defaults_fits_in_24_gib(catalog, shapes, task):
    learners = [catalog.learners[name]() for name in catalog.learners]
    estimates = check_workloads([(learner, shapes[task]) for learner in learners], memory_limit=LIMIT)
    assert len(estimates) == len(learners)
    known = {lr.name for lr, w in zip(learners, estimates) if w is not None}
    assert {"gd", "gd++", "lsa", "mlp-lsa", "kernel-ridge"} <= known


def test_gd_estimate_grows_linearly_in_steps(catalog, shapes):
    shape = shapes["linear-regression"]
    small, large = (build(catalog, f"gd[steps={k}]").workload(shape, 10000, 10000, 4) for k in (1000, 2000))
    assert large.peak_bytes / small.peak_bytes == pytest.approx(2, rel=0.01)
    assert large.seconds / small.seconds == pytest.approx(2, rel=0.01)


def test_learners_without_an_estimate_are_counted_for_their_tasks(catalog, shapes):
    (w,) = check_workloads([(catalog.learners["zero"](), shapes["linear-regression"])], n_tasks=100, memory_limit=2**30)
    assert w.peak_bytes >= 100 * (10 * 11 + 11) * 4  # 100 tasks of 10 (x, y) pairs and a query, float32
    with pytest.raises(WorkloadError, match="zero needs about"):
        check_workloads([(catalog.learners["zero"](), shapes["linear-regression"])], memory_limit=1)


def test_task_shape_reads_tokens_of_token_tasks(shapes):
    assert shapes["linear-regression"] == TaskShape(10, 10, 1)
    alt = shapes["alternating"]
    assert (alt.n_context, alt.tokens, alt.token_dim, alt.token_format) == (10, 21, 31, "alternating")


def test_suite_items_cover_each_distinct_shape_once(catalog):
    suite = catalog.suites.load("linear-ood", catalog)
    items = suite_items([catalog.learners["gd"]()], suite)
    assert sorted(shape.n_context for _, shape in items) == [5, 10, 20, 40]


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(74.5 * GIB) == "74.5 GiB"
    assert format_bytes(3 * 2**50) == "3.0 PiB"


def test_a_fixed_rate_with_huge_steps_is_refused_not_allocated(catalog):
    """A shared fixed rate stays one number until used, so the estimate refuses the run at once."""
    import time

    start = time.perf_counter()
    learner = catalog.learners["gd"](parse_spec("gd[steps=1e9,eta=0.1]")[1])
    with pytest.raises(WorkloadError, match="--allow-large"):
        check_workloads([(learner, catalog.tasks["linear-regression"]())], memory_limit=24 * 2**30)
    assert time.perf_counter() - start < 5
    assert catalog.learners["gd"](steps=3, eta=0.1).rates() == ([0.1, 0.1, 0.1], None)
