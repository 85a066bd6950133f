"""A misbehaving learner changes nothing but its own record: pristine tasks for every learner,
no query targets in predict, and every fault a failed or diverged record, never a stopped run."""

from __future__ import annotations

import contextlib
import json
import sys
import time

import pytest
import torch

import iclbench
from iclbench import watchdog
from iclbench.catalog import build_catalog
from iclbench.cli import main
from iclbench.isolation import TasksModifiedError, blind, guarded_call
from iclbench.plugins import make_plugin_manager
from iclbench.runner import Evaluation, LearnerSpec, Plan
from iclbench.store import ResultStore

FAST_GD = {"tune_tasks": 256}


class Rogue(iclbench.Learner):
    """Predicts the context's mean label, after misbehaving as its config says."""

    name = "rogue"

    class Config(iclbench.LearnerConfig):
        act: str = "none"

    def predict(self, episode):
        act = self.config.act
        if act == "scale-x":
            episode.context_x.mul_(2)  # an in-place normalisation
        elif act == "zero-y":
            episode.query_y.zero_()
        elif act == "exit":
            sys.exit(3)
        elif act == "base":
            raise BaseException("a library's own BaseException")
        elif act == "cheat":
            return episode.query_y
        elif act == "huge":
            return torch.full_like(episode.query_x[:, :1], 3e38)
        elif act == "nan":
            return torch.full_like(episode.query_x[:, :1], float("nan"))
        elif act == "sleep":
            time.sleep(5)
        return episode.context_y.mean(dim=1)

    def hyperparameters(self):
        return {"eta": torch.tensor(1.0)} if self.config.act == "tensor-hp" else {}

    def fit_info(self):
        return [1, 2] if self.config.act == "list-info" else {}


class RoguePlugin:
    @iclbench.hookimpl
    def register_learners(self, register):
        register(Rogue)


@pytest.fixture(scope="module")
def catalog():
    pm = make_plugin_manager()
    pm.add(RoguePlugin(), "rogue-plugin", "tests/test_isolation.py")
    return build_catalog(pm)


def run(catalog, tmp_path, specs, align_to=None, **kw):
    learners = [LearnerSpec(n, dict(o)) for n, o in specs]
    plan = Plan(learners, catalog.suites.load("linear", catalog), [0], n_tasks=kw.pop("n_tasks", 300),
                align_to=LearnerSpec(*align_to) if align_to else None, **kw)
    return {r["label"]: r for r in Evaluation(catalog, plan, ResultStore(tmp_path)).run() if r["task_label"] == "linear"}


GD2 = ("gd", {"steps": 2, **FAST_GD})


@pytest.fixture(scope="module")
def honest(catalog, tmp_path_factory):
    """gd-2 and least squares scored alone: what they score beside any rogue."""
    return run(catalog, tmp_path_factory.mktemp("honest"), [GD2, ("least-squares", {})])


@pytest.mark.parametrize("act,field", [("scale-x", "context_x"), ("zero-y", "query_y")])
def test_a_learner_writing_into_its_tasks_fails_and_changes_nobody_else(catalog, tmp_path, honest, act, field):
    recs = run(catalog, tmp_path, [("rogue", {"act": act}), GD2, ("least-squares", {})])
    bad = recs[f"rogue[act={act}]"]
    assert bad["status"] == "failed" and bad["stage"] == "predict"
    assert "TasksModifiedError" in bad["error"] and f"'rogue[act={act}]'" in bad["error"] and field in bad["error"]
    for label in ("gd[steps=2,tune_tasks=256]", "least-squares"):
        assert recs[label]["metrics"] == honest[label]["metrics"]  # bit for bit


def test_predict_never_sees_the_query_targets(catalog, tmp_path):
    recs = run(catalog, tmp_path, [("rogue", {"act": "cheat"}), ("zero", {})])
    cheat = recs["rogue[act=cheat]"]
    assert cheat["status"] == "diverged" and cheat["n_nonfinite"] == 300  # the targets it returned are masked
    assert recs["zero"]["status"] == "ok" and recs["zero"]["metrics"]["loss"] > 0.1


def test_blind_copies_are_private_and_checked():
    ep = iclbench.Episode(torch.ones(2, 3, 4), torch.ones(2, 3, 1), torch.ones(2, 4), torch.full((2, 1), 5.0))
    seen = blind(ep)
    assert seen.query_y.isnan().all() and torch.equal(seen.context_x, ep.context_x)
    assert seen.context_x.data_ptr() != ep.context_x.data_ptr()
    with pytest.raises(TasksModifiedError, match="the reference 'r' modified the evaluation tasks' query_x in predict"):
        guarded_call("the reference 'r'", "predict", lambda e: e.query_x.add_(1), ep)
    assert torch.equal(ep.query_x, torch.ones(2, 4))  # the original is untouched


def test_a_reference_writing_into_its_tasks_is_named(catalog, tmp_path):
    recs = run(catalog, tmp_path, [("zero", {})], align_to=("rogue", {"act": "scale-x"}))
    r = recs["zero"]
    assert r["status"] == "failed" and r["stage"] == "reference"
    assert "the reference 'rogue[act=scale-x]' modified the evaluation tasks' context_x" in r["error"]


@pytest.mark.parametrize("act,error", [("exit", "SystemExit: 3"), ("base", "BaseException: a library's own")])
def test_exit_and_base_exceptions_in_predict_are_failed_records(catalog, tmp_path, honest, act, error):
    recs = run(catalog, tmp_path, [("rogue", {"act": act}), ("least-squares", {})])
    bad = recs[f"rogue[act={act}]"]
    assert bad["status"] == "failed" and bad["stage"] == "predict" and bad["error"].startswith(error)
    assert recs["least-squares"]["metrics"] == honest["least-squares"]["metrics"]


def test_sys_exit_in_predict_exits_1_with_later_learners_scored(tmp_path):
    plugin = tmp_path / "quitter.py"
    plugin.write_text("import sys, iclbench\n"
                      "class Quitter(iclbench.Learner):\n"
                      "    name = 'quitter'\n"
                      "    def predict(self, episode):\n"
                      "        sys.exit(0)\n"
                      "@iclbench.hookimpl\n"
                      "def register_learners(register):\n"
                      "    register(Quitter)\n")
    out = tmp_path / "out"
    rc = main(["evaluate", "--plugin", str(plugin), "--learners", "quitter,zero", "--suite", "linear", "--n-tasks", "100",
               "--device", "cpu", "--out", str(out), "--quiet"])
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rc == 1
    assert {r["learner"]: r["status"] for r in recs if r["task_label"] == "linear"} == {"quitter": "failed", "zero": "ok"}


@pytest.mark.parametrize("act,where", [("tensor-hp", "hyperparameters()['eta']: a Tensor"),
                                       ("list-info", "fit_info(): a list, not a dict")])
def test_hyperparameters_that_are_not_json_are_the_learners_failure(catalog, tmp_path, act, where):
    recs = run(catalog, tmp_path, [("rogue", {"act": act}), ("zero", {})])
    bad = recs[f"rogue[act={act}]"]
    assert bad["status"] == "failed" and bad["stage"] == "fit" and where in bad["error"]
    assert recs["zero"]["status"] == "ok"


def test_a_loss_that_overflows_is_a_divergence(catalog, tmp_path):
    rec = run(catalog, tmp_path, [("rogue", {"act": "huge"})])["rogue[act=huge]"]
    assert rec["status"] == "diverged" and rec["n_nonfinite"] == 300


def test_a_diverged_reference_is_said_once_and_compares_nothing(catalog, tmp_path):
    with pytest.warns(UserWarning, match="the reference 'rogue\\[act=nan\\]' diverged") as caught:
        recs = run(catalog, tmp_path, [("zero", {}), ("least-squares", {})], align_to=("rogue", {"act": "nan"}))
    assert sum("diverged" in str(w.message) and "reference" in str(w.message) for w in caught) == 1
    for r in recs.values():
        assert r["status"] == "ok" and r["reference_status"] == "diverged"
        assert "loss_diff" not in r["metrics"] and "sens_cos" not in r["metrics"]


def test_the_cosine_against_a_zero_reference_is_undefined(catalog, tmp_path):
    rec = run(catalog, tmp_path, [("least-squares", {})], align_to=("zero", {}))["least-squares"]
    assert "sens_cos" not in rec["metrics"] and "zero on every task" in rec["undefined"]["sens_cos"]
    assert rec["metrics"]["pred_diff"] > 0  # the other comparisons are defined


def test_a_learner_past_its_time_limit_fails_and_is_named_while_running(catalog, tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(watchdog, "REPORT_EVERY", 0.2)
    learners = [LearnerSpec("rogue", {"act": "sleep"}), LearnerSpec("zero")]
    plan = Plan(learners, catalog.suites.load("linear", catalog), [0], n_tasks=50, learner_timeout=1.0)
    start = time.monotonic()
    recs = {r["label"]: r for r in Evaluation(catalog, plan, ResultStore(tmp_path), progress=lines.append).run()
            if r["task_label"] == "linear"}
    assert time.monotonic() - start < 4 * len(plan.suite.evals)
    bad = recs["rogue[act=sleep]"]
    assert bad["status"] == "failed" and bad["stage"] == "predict" and "time limit of 1 s" in bad["error"]
    assert recs["zero"]["status"] == "ok"
    assert any("rogue[act=sleep] in predict on linear/linear" in m and "still running" in m for m in lines)


def test_the_time_limit_is_checked_as_a_usage_error(tmp_path, capsys):
    rc = main(["evaluate", "--learners", "zero", "--learner-timeout", "0", "--out", str(tmp_path), "--quiet"])
    assert rc == 2 and "--learner-timeout must be a positive number of seconds, got 0" in capsys.readouterr().err
    with pytest.raises(iclbench.api.UsageError, match="learner_timeout must be a positive number"):
        iclbench.evaluate("zero", learner_timeout=-1.0, out=tmp_path)


def test_the_time_limit_stops_a_learner_from_the_command_line(tmp_path):
    plugin = tmp_path / "sleeper.py"
    plugin.write_text("import time, iclbench\n"
                      "class Sleeper(iclbench.Learner):\n"
                      "    name = 'sleeper'\n"
                      "    def predict(self, episode):\n"
                      "        time.sleep(30)\n"
                      "@iclbench.hookimpl\n"
                      "def register_learners(register):\n"
                      "    register(Sleeper)\n")
    out, start = tmp_path / "out", time.monotonic()
    rc = main(["evaluate", "--plugin", str(plugin), "--learners", "sleeper,zero", "--task", "linear-regression",
               "--n-tasks", "50", "--device", "cpu", "--learner-timeout", "0.5", "--out", str(out), "--quiet"])
    recs = {r["learner"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rc == 1 and time.monotonic() - start < 20
    assert recs["sleeper"]["status"] == "failed" and "LearnerTimeout" in recs["sleeper"]["error"]
    assert recs["zero"]["status"] == "ok"


def test_the_board_says_reference_diverged_and_undefined_instead_of_numbers(catalog, tmp_path):
    from iclbench import board

    for ref, where in ((("rogue", {"act": "nan"}), "diverged"), (("zero", {}), "zero")):
        out = tmp_path / where
        with pytest.warns(UserWarning) if where == "diverged" else contextlib.nullcontext():
            run(catalog, out, [("least-squares", {})], align_to=ref)
        agg = board.aggregate(board.to_frame(ResultStore(out).records()))
        cells = agg[(agg.learner == "least-squares") & (agg.task == "linear")].set_index("metric")
        if where == "diverged":
            assert {cells.loc[m, "status"] for m in ("loss_diff", "pred_diff", "sens_cos", "sens_diff")} == {"reference diverged"}
        else:
            assert cells.loc["sens_cos", "status"] == "undefined" and cells.loc["pred_diff", "status"] == "ok"
        assert cells.loc["loss", "status"] == "ok"
        text = board.cell_text(next(cells.loc[["sens_cos"]].itertuples()), None)
        assert text == ("reference diverged" if where == "diverged" else "undefined")
