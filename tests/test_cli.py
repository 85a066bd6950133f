"""The `iclbench` command line end to end: evaluate, leaderboard, list, plugins, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iclbench.cli import main

REQUIRED = {"learner", "learner_config", "task", "task_config", "seed", "n_tasks", "metrics", "device_type",
            "versions", "git_commit", "seconds", "created_at"}
FAST_GD = ["--learner-config", "gd:tune_tasks=2000"]


def evaluate(out, *args):
    return main(["evaluate", "--n-tasks", "500", "--device", "cpu", "--out", str(out), "--quiet", *args])


def records(out):
    return [json.loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    rc = evaluate(out, "--learners", "zero,gd,least-squares", "--suite", "linear", "--seeds", "0,1",
                  "--align-to", "gd", *FAST_GD)
    assert rc == 0
    return out


def test_evaluate_writes_complete_records(results):
    recs = records(results)
    assert sorted((r["learner"], r["seed"]) for r in recs) == [
        (n, s) for n in ("gd", "least-squares", "zero") for s in (0, 1)]
    for r in recs:
        assert REQUIRED <= set(r)
        assert {"loss", "loss_ci95", "pred_diff", "sens_cos", "sens_diff"} <= set(r["metrics"])
        assert set(r["versions"]) >= {"python", "torch", "iclbench"}
        assert r["device_type"] == "cpu" and r["n_tasks"] == 500 and r["align_to"] == "gd[tune_tasks=2000]"
        assert r["task"] == "linear-regression" and r["task_config"]["N"] == 10
        assert r["seconds"] >= 0 and r["created_at"].startswith("20")
    for r in (r for r in recs if r["learner"] == "gd"):  # aligned to itself
        assert r["metrics"]["pred_diff"] < 1e-12 and r["metrics"]["sens_cos"] == pytest.approx(1, abs=1e-6)
        assert r["learner_config"]["tune_tasks"] == 2000 and len(r["hyperparameters"]["eta"]) == 1
    ls = [r["metrics"]["loss"] for r in recs if r["learner"] == "least-squares"]
    zero = [r["metrics"]["loss"] for r in recs if r["learner"] == "zero"]
    assert max(ls) < 1e-6 and min(zero) > 0.3


def test_leaderboard_from_the_results(results, tmp_path, capsys):
    assert main(["leaderboard", str(results), "--out", str(tmp_path), "--format", "md,csv,json"]) == 0
    md = (tmp_path / "leaderboard.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    loss_rows = rows[: rows.index("learner", 1)]  # the loss table comes first, alignment tables after
    assert loss_rows == ["learner", "least-squares", "gd[tune_tasks=2000]", "zero"]
    assert "|:--" in md or "|---" in md or "| ---" in md
    assert (tmp_path / "leaderboard.csv").exists() and (tmp_path / "leaderboard.json").exists()
    assert str(tmp_path / "leaderboard.md") in capsys.readouterr().out


def test_rerun_reuses_and_force_recomputes(results):
    before = (results / "results.jsonl").read_text()
    assert evaluate(results, "--learners", "zero,gd,least-squares", "--seeds", "0,1", "--align-to", "gd", *FAST_GD) == 0
    assert (results / "results.jsonl").read_text() == before
    assert evaluate(results, "--learners", "zero", "--seeds", "0", "--align-to", "gd", "--force", *FAST_GD) == 0
    assert len(records(results)) == 7


@pytest.mark.parametrize("args,message", [
    (["--learners", "gd+"], "did you mean 'gd++'?"),
    (["--learners", "zero", "--suite", "linear-od"], "did you mean 'linear-ood'?"),
    (["--learners", "zero", "--task", "linear-regresion"], "did you mean 'linear-regression'?"),
    (["--learners", "gd", "--learner-config", "gd:steps=0"], "steps: Input should be greater than or equal to 1 (got 0)"),
    (["--learners", "gd[stepz=2]"], "stepz"),
    (["--learners", "zero", "--task", "linear-regression", "--task-config", "N=0"], "N: "),
    (["--learners", "zero", "--suite", "linear", "--task", "linear-regression"], "either --suite or --task"),
    (["--learners", "zero", "--seeds", "a,b"], "--seeds expects comma-separated integers"),
    (["--learners", "zero", "--n-tasks", "1"], "--n-tasks must be at least 2"),
    (["--learners", "zero", "--device", "tpu"], "--device must be auto, cpu, cuda"),
    (["--learners", "zero", "--device", "mps"], "--device mps: Apple's Metal (MPS) backend is not available"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path, capsys, args, message):
    assert main(["evaluate", "--out", str(tmp_path), "--quiet", "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclbench: error:") and message in err
    assert not (tmp_path / "results.jsonl").exists()


def test_single_task_with_config(tmp_path):
    assert evaluate(tmp_path, "--learners", "least-squares,zero", "--task", "linear-regression",
                    "--task-config", "N=5") == 0
    recs = records(tmp_path)
    assert {r["task_config"]["N"] for r in recs} == {5}
    assert {r["suite"] for r in recs} == {"linear-regression[N=5]"}
    # N = 5 < d = 10: least squares can no longer be exact
    assert min(r["metrics"]["loss"] for r in recs) > 0.05


def test_list_and_plugins(capsys):
    assert main(["list", "learners"]) == 0
    learners = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert learners["gd"] == "gradient-descent" and learners["zero"] == "baselines"
    assert main(["list", "suites"]) == 0
    assert {line.split()[0] for line in capsys.readouterr().out.splitlines()} >= {"linear", "linear-ood"}
    assert main(["list", "trackers"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [["tensorboard", "trackers"],
                                                                                  ["wandb", "trackers"]]
    assert main(["list", "executors"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [["local", "local-executor"],
                                                                                  ["ray", "executors"]]
    assert main(["plugins"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"baselines", "gradient-descent", "kernels", "least-squares", "linear-regression", "suites"} <= names


def test_plugin_file_option(tmp_path, capsys):
    plugin = tmp_path / "halfzero.py"
    plugin.write_text(
        "import torch, iclbench\n"
        "class Half(iclbench.Learner):\n"
        "    name = 'half'\n"
        "    def predict(self, episode):\n"
        "        return torch.zeros_like(episode.query_x[:, :1]) - 0.0\n"
        "@iclbench.hookimpl\n"
        "def register_learners(register):\n"
        "    register(Half)\n")
    assert evaluate(tmp_path / "out", "--plugin", str(plugin), "--learners", "half,zero") == 0
    loss = {r["learner"]: r["metrics"]["loss"] for r in records(tmp_path / "out")}
    assert loss["half"] == loss["zero"]  # both predict 0 (the plugin file's learner is scored like a built-in)
    assert main(["list", "learners", "--plugin", str(tmp_path / "nope.py")]) == 2
    assert "--plugin: plugin file not found" in capsys.readouterr().err


def test_console_script():
    exe = shutil.which("iclbench", path=str(Path(sys.executable).parent)) or shutil.which("iclbench")
    assert exe, "the iclbench console script is not installed"
    out = subprocess.run([exe, "list", "suites"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {line.split()[0] for line in out.stdout.splitlines()} >= {"linear", "linear-ood"}


@pytest.mark.parametrize("args,message", [(["--jobs", "0"], "--jobs must be at least 1, got 0"),
                                          (["--budget", "huge"], "--budget must be one of full, small, got 'huge'")])
def test_reproduce_usage_errors(tmp_path, capsys, args, message):
    assert main(["reproduce", "paper", "--out", str(tmp_path), "--device", "cpu", *args]) == 2
    assert message in capsys.readouterr().err
