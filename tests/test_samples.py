"""--log-samples: each record's per-task outputs stored beside results.jsonl; the record's loss
and a paired difference between two learners are recomputed from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import iclbench
from iclbench.cli import main

FAST_GD = {"gd": {"tune_tasks": 2000}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    iclbench.evaluate(["zero", "gd"], suite="linear", seeds=[0], n_tasks=400, device="cpu", align_to="gd",
                      learner_config=FAST_GD, out=out, log_samples=True)
    return out


def test_a_records_loss_and_interval_are_recomputed_from_its_samples(run):
    df = iclbench.records(run, samples=True)
    assert len(df) == 2 * len({t for t in df.task}) and df.samples.notna().all()
    for _, row in df.iterrows():
        s = row.samples
        assert s["predictions"].shape == s["targets"].shape == (400, 1) and s["losses"].shape == (400,)
        losses = 0.5 * ((s["predictions"].astype(np.float64) - s["targets"]) ** 2).sum(-1)
        assert losses == pytest.approx(s["losses"], rel=1e-5, abs=1e-9)
        assert s["losses"].mean() == pytest.approx(row.loss, rel=1e-6)
        ci = 1.96 * s["losses"].std(ddof=1) / np.sqrt(400)
        assert ci == pytest.approx(row.loss_ci95, rel=1e-2)


def test_a_paired_difference_is_recomputed_from_two_learners_samples(run):
    df = iclbench.records(run, samples=True)
    for task, rows in df.groupby("task"):
        zero, gd = (rows[rows.learner == n].iloc[0] for n in ("zero", "gd"))
        assert np.array_equal(zero.samples["targets"], gd.samples["targets"])  # the same tasks
        diff = zero.samples["losses"].astype(np.float64) - gd.samples["losses"]
        assert diff.mean() == pytest.approx(zero.loss_diff, rel=1e-5)  # the record's paired difference to gd
        assert np.array_equal(zero.samples["reference_losses"], gd.samples["losses"])


def test_stored_records_without_samples_are_measured_again_to_log_them(tmp_path, capsys):
    args = ["evaluate", "--learners", "zero", "--n-tasks", "200", "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    assert iclbench.records(tmp_path, samples=True).samples.isna().all()
    assert main(args + ["--log-samples"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    logged = [r for r in lines if r.get("samples")]
    assert logged and all((tmp_path / r["samples"]).is_file() for r in logged)
    assert main(args + ["--log-samples"]) == 0  # now stored with them: reused, nothing appended
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == len(lines)
