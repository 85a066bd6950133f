"""A learner's output is checked before it is scored, and one learner's failure stops nothing else."""

from __future__ import annotations

import json
import math

import pytest
import torch

import iclbench
from iclbench.catalog import build_catalog
from iclbench.codehash import class_digest, core_digest
from iclbench.plugins import make_plugin_manager
from iclbench.runner import Evaluation, LearnerSpec, Plan
from iclbench.store import ResultStore


class Faulty(iclbench.Learner):
    """Predicts the query's mean label with a configurable fault."""

    name = "faulty"

    class Config(iclbench.LearnerConfig):
        fault: str = "none"  # none, flat, wide, float64, nan, inf, fit, predict
        seed_to_fail: int = -1  # the fault applies to this seed only; -1: every seed

    def fit(self, task, *, generator, device):
        self.seed = generator.initial_seed()
        if self.config.fault == "fit":
            raise RuntimeError("tuning exploded")

    def predict(self, episode):
        pred = episode.context_y.mean(dim=1)  # (B, dy)
        fault = self.config.fault
        if fault == "flat":
            return pred[:, 0]  # (B,): would broadcast against (B, 1) targets
        if fault == "wide":
            return pred.expand(-1, 3)
        if fault == "float64":
            return pred.double()
        if fault in ("nan", "inf"):
            pred = pred.clone()
            pred[:7] = float(fault)
        if fault == "predict":
            raise ValueError("no query today")
        return pred


class FaultyPlugin:
    @iclbench.hookimpl
    def register_learners(self, register):
        register(Faulty)


@pytest.fixture(scope="module")
def catalog():
    pm = make_plugin_manager()
    pm.add(FaultyPlugin(), "faulty-plugin", "tests/test_validation.py")
    return build_catalog(pm)


def run(catalog, tmp_path, *learners, seeds=(0,)):
    specs = [LearnerSpec(*s) if isinstance(s, tuple) else LearnerSpec(s) for s in learners]
    plan = Plan(specs, catalog.suites.load("linear", catalog), list(seeds), n_tasks=64)
    ev = Evaluation(catalog, plan, ResultStore(tmp_path))
    return ev, ev.run()


@pytest.mark.parametrize("fault, shown", [("flat", r"shape \(64,\), expected \(B, dy\) = \(64, 1\)"),
                                          ("wide", r"shape \(64, 3\), expected \(B, dy\) = \(64, 1\)"),
                                          ("float64", r"dtype torch.float64, expected the episode's dtype torch.float32")])
def test_wrong_output_is_a_failed_record_naming_learner_and_shapes(catalog, tmp_path, fault, shown):
    ev, records = run(catalog, tmp_path, ("faulty", {"fault": fault}), "zero")
    bad = next(r for r in records if r["learner"] == "faulty")
    assert bad["status"] == "failed" and bad["stage"] == "predict" and bad["metrics"] == {}
    assert bad["error"].startswith(f"LearnerOutputError: learner 'faulty[fault={fault}]': predict() returned")
    assert __import__("re").search(shown, bad["error"])
    zero = next(r for r in records if r["learner"] == "zero")
    assert zero["status"] == "ok" and zero["metrics"]["loss"] > 0.3  # the run went on
    assert len(ev.failures) == 1 and "faulty[fault=" in ev.failures[0] and "seed 0" in ev.failures[0]


@pytest.mark.parametrize("fault", ["nan", "inf"])
def test_non_finite_predictions_give_a_diverged_record_in_strict_json(catalog, tmp_path, fault):
    with pytest.warns(UserWarning, match=r"faulty\[fault=%s\] diverged on linear/linear, seed 0: 7 of 64" % fault):
        ev, records = run(catalog, tmp_path, ("faulty", {"fault": fault}))
    (r,) = records
    assert r["status"] == "diverged" and r["n_nonfinite"] == 7 and not ev.failures
    assert (math.isnan if fault == "nan" else math.isinf)(r["metrics"]["loss"])
    line = (tmp_path / "results.jsonl").read_text().splitlines()[0]
    json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in results.jsonl"))  # strict JSON
    assert ('"NaN"' if fault == "nan" else '"Infinity"') in line
    (back,) = ResultStore(tmp_path).records()
    assert (math.isnan if fault == "nan" else math.isinf)(back["metrics"]["loss"])


@pytest.mark.parametrize("fault, stage, text", [("fit", "fit", "RuntimeError: tuning exploded"),
                                                ("predict", "predict", "ValueError: no query today")])
def test_an_exception_is_stored_as_a_failed_record_and_the_run_goes_on(catalog, tmp_path, fault, stage, text):
    ev, records = run(catalog, tmp_path, ("faulty", {"fault": fault}), "zero", seeds=(0, 1))
    failed = [r for r in records if r["learner"] == "faulty"]
    assert [r["seed"] for r in failed] == [0, 1]
    assert all(r["status"] == "failed" and r["stage"] == stage and r["error"] == text for r in failed)
    assert sorted(r["seed"] for r in records if r["learner"] == "zero" and r["status"] == "ok") == [0, 1]
    assert ev.failures == [f"faulty[fault={fault}] on linear/linear, seed {s}: {stage} failed: {text}" for s in (0, 1)]


def test_a_task_drawing_non_finite_inputs_fails_every_record_naming_the_task(catalog, tmp_path, monkeypatch):
    from iclbench_plugins.tasks.linear_regression import LinearRegression
    real = LinearRegression.sample

    def broken(self, n, *, generator, device):
        ep = real(self, n, generator=generator, device=device)
        ep.context_x[3, 0, 0] = float("inf")
        return ep
    monkeypatch.setattr(LinearRegression, "sample", broken)
    ev, records = run(catalog, tmp_path, "zero", "least-squares")
    assert all(r["status"] == "failed" for r in records) and len(records) == 2
    assert records[0]["error"] == ("ValueError: task 'linear' (linear-regression) drew non-finite values for seed 0: "
                                   "1 in context_x of 64 tasks")


def test_laplace_inputs_stay_finite_at_the_edge_and_unchanged_elsewhere():
    from iclbench_plugins.tasks.linear_regression import laplace_inverse_cdf
    u = torch.tensor([0.0, 2.0 ** -24, 0.25, 0.5, 0.75, 1 - 2.0 ** -24])
    x = laplace_inverse_cdf(u)
    assert bool(torch.isfinite(x).all()) and float(x[0]) < float(x[1]) < 0  # u = 0: the most negative draw, finite
    centred = u[1:] - 0.5
    assert torch.equal(x[1:], -torch.sign(centred) * torch.log1p(-2 * centred.abs()))  # the plain inverse CDF


def test_failed_records_are_retried_by_a_rerun(catalog, tmp_path):
    run(catalog, tmp_path, ("faulty", {"fault": "predict"}))
    store = ResultStore(tmp_path)
    rec = store.records()[0]
    store.path.write_text("")  # keep the failed record, but as if the fault were gone
    store.append(rec)
    ev, (again,) = run(catalog, tmp_path, ("faulty", {"fault": "predict"}))
    assert again["status"] == "failed" and len(store.records()) == 2  # recomputed, not reused


def test_paired_loss_difference_to_the_reference(catalog, tmp_path):
    specs = [LearnerSpec("zero"), LearnerSpec("least-squares")]
    plan = Plan(specs, catalog.suites.load("linear", catalog), [0], n_tasks=500, align_to=LearnerSpec("zero"))
    records = {r["learner"]: r for r in Evaluation(catalog, plan, ResultStore(tmp_path)).run()}
    z, ls = records["zero"]["metrics"], records["least-squares"]["metrics"]
    assert z["loss_diff"] == 0 and z["loss_diff_ci95"] == 0
    assert ls["loss_diff"] == pytest.approx(ls["loss"] - z["loss"], rel=1e-6)  # the mean of differences
    # least squares is exact here, so the paired difference has exactly the spread of zero's losses
    assert ls["loss_diff_ci95"] == pytest.approx(z["loss_ci95"], rel=1e-3)


def test_records_carry_provenance_and_reuse_needs_it_to_match(catalog, tmp_path):
    _, (r,) = run(catalog, tmp_path, "zero")
    assert r["provenance"]["learner"] == {"plugin": "baselines", "source": f"iclbench {iclbench.__version__}", "sha256": None,
                                          "code": class_digest(catalog.learners["zero"])}
    assert r["provenance"]["core"] == core_digest()
    assert r["provenance"]["task"]["plugin"] == "linear-regression"
    store = ResultStore(tmp_path)
    store.path.write_text(json.dumps({**r, "provenance": {**r["provenance"], "learner": {
        "plugin": "baselines", "source": "iclbench 0.0.1", "sha256": None}}}) + "\n")
    _, (again,) = run(catalog, tmp_path, "zero")
    assert again["created_at"] and len(store.records()) == 2  # another version's record is not reused


def test_the_store_is_read_again_only_when_another_writer_added_to_it(catalog, tmp_path):
    store = ResultStore(tmp_path)
    reads = []
    records = store.records
    store.records = lambda: reads.append(1) or records()
    plan = Plan([LearnerSpec("zero"), LearnerSpec("averaging")], catalog.suites.load("linear", catalog), [0, 1], n_tasks=32)
    ev = Evaluation(catalog, plan, store)
    ev.run()
    assert len(reads) == 1  # only this run wrote: its own appends keep it up to date
    ResultStore(tmp_path).append({**records()[0], "seed": 7})  # another writer
    ev.refresh()
    assert len(reads) == 2 and len(ev.stored) == 5
