"""Learners defined in a session (no file holds them) evaluate through the API, reuse records
only for the same code, and are refused where another process would have to load them."""

from __future__ import annotations

import json
import sys
import types

import pytest

import iclbench
from iclbench.api import UsageError
from iclbench.executors import ExecutorOptions

CELL = '''
import torch
from pydantic import Field
import iclbench

class ShrunkLeastSquares(iclbench.Learner):
    """Least squares scaled by (1 - shrink): a learner whose loss is known in closed form."""

    name = "shrunk-ls"

    class Config(iclbench.LearnerConfig):
        shrink: float = Field(0.0, ge=0, le=1)

    def predict(self, episode):
        w = torch.linalg.pinv(episode.context_x) @ episode.context_y  # (B, dx, dy)
        return {power} * (1 - self.config.shrink) * (episode.query_x[:, None, :] @ w)[:, 0]  # (B, dy)
'''


def notebook_class(power: str = "1.0") -> type:
    """The learner as a notebook cell defines it: in a module with no file and no spec."""
    module = types.ModuleType("iclbench_test_notebook")
    sys.modules[module.__name__] = module
    exec(compile(CELL.replace("{power}", power), "<cell>", "exec"), module.__dict__)
    return module.ShrunkLeastSquares


def run(out, learners, **kw):
    return iclbench.evaluate(learners, suite="linear", seeds=[0], n_tasks=300, device="cpu", out=out, **kw)


def test_classes_and_instances_from_a_session_are_scored_and_reused(tmp_path):
    cls = notebook_class()
    df = run(tmp_path, [cls, cls(shrink=0.5), "zero"]).set_index("label")
    assert set(df.index) == {"shrunk-ls", "shrunk-ls[shrink=0.5]", "zero"} and df.attrs["failures"] == []
    assert df.loc["shrunk-ls", "loss"] < 1e-8  # exact least squares on noiseless tasks
    # prediction (1/2) W x: each task's error is half the zero predictor's, the loss a quarter
    assert df.loc["shrunk-ls[shrink=0.5]", "loss"] == pytest.approx(0.25 * df.loc["zero", "loss"], rel=1e-4)
    stored = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    mine = [r for r in stored if r["learner"] == "shrunk-ls"]
    assert {r["provenance"]["learner"]["plugin"] for r in mine} == {"session"}
    assert all(r["provenance"]["learner"]["code"] for r in mine)  # a digest, not None

    before = (tmp_path / "results.jsonl").read_text()
    run(tmp_path, [notebook_class(), "zero"])  # the same cell run again: same code, reused
    assert (tmp_path / "results.jsonl").read_text() == before


def test_edited_session_code_is_recomputed(tmp_path):
    first = run(tmp_path, [notebook_class()]).loss.iloc[0]
    again = run(tmp_path, [notebook_class(power="0.5")])  # the cell edited: prediction halved
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and first < 1e-8 and again.loss.iloc[0] > 1e-2


def test_session_learners_are_refused_where_workers_would_load_them(tmp_path):
    cls = notebook_class()
    with pytest.raises(UsageError, match=r"learners: learners defined in this session \(ShrunkLeastSquares\)"):
        run(tmp_path, [cls], executor_options=ExecutorOptions(jobs=2))
    with pytest.raises(TypeError, match=r"learners: expected learner specs .* got 3"):
        run(tmp_path, [cls, 3])
