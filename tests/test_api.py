"""The Python API: the same records, cache and tables as the CLI, returned as data frames."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import iclbench
from iclbench.api import UsageError
from iclbench.cli import main

FAST_GD = {"gd": {"tune_tasks": 2000}}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    df = iclbench.evaluate(["zero", "gd", "least-squares"], suite="linear", seeds=[0, 1], n_tasks=500, device="cpu",
                           align_to="gd", learner_config=FAST_GD, out=out)
    return out, df


def test_evaluate_returns_one_row_per_record_with_its_metrics(results):
    out, df = results
    assert isinstance(df, pd.DataFrame) and len(df) == 6 and df.attrs["failures"] == []
    assert sorted(zip(df.learner, df.seed)) == [(n, s) for n in ("gd", "least-squares", "zero") for s in (0, 1)]
    stored = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for r in stored:  # every row is a stored record, numbers unchanged
        row = df[(df.label == r["label"]) & (df.seed == r["seed"])].iloc[0]
        assert row.loss == r["metrics"]["loss"] and row.pred_diff == r["metrics"]["pred_diff"]
        assert row.task == "linear" and row.status == "ok"
    ls, zero = df[df.learner == "least-squares"].loss, df[df.learner == "zero"].loss
    assert ls.max() < 1e-6 and zero.min() > 0.3
    gd = df[df.learner == "gd"]
    assert (gd.sens_cos - 1).abs().max() < 1e-6 and gd.pred_diff.max() < 1e-12  # aligned to itself


def test_the_cli_reuses_what_the_api_stored(results, capsys):
    out, df = results
    before = (out / "results.jsonl").read_text()
    assert main(["evaluate", "--learners", "zero,least-squares", "--seeds", "0,1", "--n-tasks", "500", "--device",
                 "cpu", "--align-to", "gd", "--learner-config", "gd:tune_tasks=2000", "--out", str(out), "--quiet"]) == 0
    assert (out / "results.jsonl").read_text() == before  # same measurements: nothing recomputed
    again = iclbench.evaluate("zero,least-squares", seeds=[0, 1], n_tasks=500, device="cpu", align_to="gd",
                              learner_config=FAST_GD, out=out)
    merged = again.merge(df, on=["label", "seed"], suffixes=("", "_first"))
    assert len(merged) == 4 and (merged.loss == merged.loss_first).all()


def test_leaderboard_matches_the_cli_tables(results, tmp_path):
    out, df = results
    board = iclbench.leaderboard(out, out=tmp_path / "board")
    loss = board[(board.metric == "loss") & (board.learner == "zero")]
    assert len(loss) == 1 and loss.seeds.iloc[0] == 2
    assert loss["mean"].iloc[0] == pytest.approx(df[df.learner == "zero"].loss.mean(), rel=1e-12)
    assert main(["leaderboard", str(out), "--out", str(tmp_path / "cli"), "--no-plots"]) == 0
    assert (tmp_path / "board" / "leaderboard.csv").read_text() == (tmp_path / "cli" / "leaderboard.csv").read_text()
    assert list(iclbench.records(out).label) == list(df.label)


@pytest.mark.parametrize("call, message", [
    (lambda out: iclbench.evaluate("nope", out=out), "nope"),
    (lambda out: iclbench.evaluate("zero", suite="linear", task="sine", out=out), "give either suite or task, not both"),
    (lambda out: iclbench.evaluate("zero", n_tasks=1, out=out), "n_tasks must be at least 2"),
    (lambda out: iclbench.evaluate("zero", dtype="float16", out=out), "dtype must be one of"),
    (lambda out: iclbench.leaderboard(out / "missing"), "missing"),
    (lambda out: iclbench.leaderboard([{"suite": "s"}], suite="other"), "no records for suite 'other'"),
])
def test_bad_requests_raise_before_anything_runs(tmp_path, call, message):
    with pytest.raises(Exception, match=message) as err:
        call(tmp_path)
    assert isinstance(err.value, iclbench.api.usage_errors())
    assert not (Path(tmp_path) / "results.jsonl").exists()
    assert issubclass(UsageError, ValueError)
