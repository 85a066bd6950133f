"""The command line refuses bad input before any work, survives signals and concurrent runs,
and never reuses a record made by other code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iclbench.cli import main
from iclbench.store import record_key

COUNTING_PLUGIN = """
import os, time, torch, iclbench

class Counting(iclbench.Learner):
    '''Predicts scale * y_1; logs every fit (pid, seed) and can be slowed down.'''
    name = "counting"

    class Config(iclbench.LearnerConfig):
        scale: float = 1.0
        sleep: float = 0.0

    def fit(self, task, *, generator, device):
        with open(os.environ["COUNT_FILE"], "a") as f:
            f.write(f"{os.getpid()} {generator.initial_seed()}\\n")
        time.sleep(self.config.sleep)

    def predict(self, episode):
        return SCALE * self.config.scale * episode.context_y[:, 0]

SCALE = 1.0

@iclbench.hookimpl
def register_learners(register):
    register(Counting)
"""


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "iclbench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = tmp_path / "counting.py"
    path.write_text(COUNTING_PLUGIN)
    monkeypatch.setenv("COUNT_FILE", str(tmp_path / "fits.log"))
    return path


def evaluate(out, *args) -> int:
    return main(["evaluate", "--n-tasks", "64", "--device", "cpu", "--out", str(out), "--quiet", *args])


@pytest.mark.parametrize("args, message", [
    (["--learners", "gd[steps=2"], "unbalanced bracket in 'gd[steps=2'"),
    (["--learners", "gd[steps=2]]"], "unbalanced bracket in 'gd[steps=2]]'"),
    (["--learners", "gd[stepz=2]"], "valid keys: steps, per_step, eta, tune_tasks"),
    (["--learners", "zero", "--seeds", ""], "--seeds names no value, got ''"),
    (["--learners", "zero", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--learners", "zero", "--batch-size", "-5"], "--batch-size must be at least 1, got -5"),
    (["--learners", "gd[steps=1e9]"], "--allow-large"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert evaluate(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclbench: error:") and message in err
    assert not (tmp_path / "results.jsonl").exists()


def test_bad_options_are_refused_even_when_every_record_is_stored(tmp_path, capsys):
    assert evaluate(tmp_path, "--learners", "zero") == 0
    for bad in (["--seeds", ""], ["--batch-size", "0"]):
        assert evaluate(tmp_path, "--learners", "zero", *bad) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err


def test_learner_config_files_are_checked(tmp_path, capsys):
    broken, flat = tmp_path / "broken.toml", tmp_path / "flat.toml"
    broken.write_text("[gd]\nsteps = = 2\n")
    flat.write_text("gd = 3\n")
    assert evaluate(tmp_path, "--learners", "gd", "--learner-config", str(broken)) == 2
    assert f"--learner-config '{broken}': TOML syntax error" in capsys.readouterr().err
    assert evaluate(tmp_path, "--learners", "gd", "--learner-config", str(flat)) == 2
    assert "'gd' must be a [gd] table of options, got gd = 3" in capsys.readouterr().err


def test_plugin_file_with_a_syntax_error_exits_2_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("def register_learners(register)\n    pass\n")
    assert main(["list", "learners", "--plugin", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "SyntaxError" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_unusable_out_fails_before_any_fitting(tmp_path, capsys, plugin, where):
    blocker = tmp_path / "taken"
    blocker.write_text("")
    out = blocker if where == "file" else blocker / "sub"
    assert evaluate(out, "--plugin", str(plugin), "--learners", "counting") == 2
    assert "is not a writable folder" in capsys.readouterr().err
    assert not (tmp_path / "fits.log").exists()


def test_editing_a_plugin_file_recomputes_its_records(tmp_path, plugin):
    assert evaluate(tmp_path / "out", "--plugin", str(plugin), "--learners", "counting") == 0
    assert evaluate(tmp_path / "out", "--plugin", str(plugin), "--learners", "counting") == 0  # reused
    (first,) = lines(tmp_path / "out" / "results.jsonl")
    assert len(first["provenance"]["learner"]["sha256"]) == 64
    plugin.write_text(COUNTING_PLUGIN.replace("SCALE = 1.0", "SCALE = 2.0"))
    assert evaluate(tmp_path / "out", "--plugin", str(plugin), "--learners", "counting") == 0
    first_again, second = lines(tmp_path / "out" / "results.jsonl")
    assert second["provenance"]["learner"]["sha256"] != first["provenance"]["learner"]["sha256"]
    assert second["metrics"]["loss"] != first["metrics"]["loss"]
    assert len((tmp_path / "fits.log").read_text().splitlines()) == 2


def test_execution_only_options_neither_split_rows_nor_recompute(tmp_path):
    lsa = "lsa[train.steps=4,train.batch_size=32,train.eval_tasks=32,train.eval_every=2,train.checkpoint_every=2]"
    assert evaluate(tmp_path, "--learners", lsa) == 0
    before = (tmp_path / "results.jsonl").read_text()
    other = lsa.replace("eval_every=2,train.checkpoint_every=2", "eval_every=4,train.checkpoint_every=4")
    assert evaluate(tmp_path, "--learners", other, "--compile") == 0
    assert (tmp_path / "results.jsonl").read_text() == before  # reused: same measurement
    (rec,) = lines(tmp_path / "results.jsonl")
    assert rec["label"] == "lsa[train.steps=4,train.batch_size=32,train.eval_tasks=32]"


def test_version_help_and_describe(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "iclbench 0.1.0"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 10000)" in help_text and "(default: results)" in help_text
    assert main(["describe", "gd"]) == 0
    out = capsys.readouterr().out
    assert "tune_tasks" in out and "10000" in out


def test_leaderboard_never_overwrites_a_published_reproduction_by_default(tmp_path, capsys):
    assert evaluate(tmp_path / "res", "--learners", "zero") == 0
    assert main(["leaderboard", str(tmp_path / "res"), "--no-plots"]) == 0
    assert (tmp_path / "res" / "leaderboard" / "leaderboard.md").exists()
    published = tmp_path / "pub"
    published.mkdir()
    (published / "reproduction.json").write_text("{}")
    assert main(["leaderboard", str(tmp_path / "res"), "--out", str(published)]) == 2
    assert "is a published reproduction" in capsys.readouterr().err
    assert sorted(p.name for p in published.iterdir()) == ["reproduction.json"]


def test_an_installed_plugin_clashing_with_a_built_in(tmp_path):
    site = tmp_path / "site"
    (site / "clash_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "clash_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: clash-plugin\nVersion: 1.0\n")
    (site / "clash_plugin-1.0.dist-info" / "entry_points.txt").write_text("[iclbench]\nclash = clash_plugin\n")
    (site / "clash_plugin.py").write_text(
        "import iclbench\nclass Gd(iclbench.Learner):\n    name = 'gd'\n"
        "@iclbench.hookimpl\ndef register_learners(register):\n    register(Gd)\n")
    env = {"PYTHONPATH": str(site)}
    listing = cli("list", "learners", env=env)
    out, err = listing.communicate(timeout=120)
    assert listing.returncode == 0, err
    assert "CLASH: learner 'gd' is registered twice: by plugin 'clash' and by plugin 'gradient-descent'" in out
    plugins = cli("plugins", env=env)
    out, _ = plugins.communicate(timeout=120)
    assert plugins.returncode == 0 and "clash-plugin 1.0" in out and "CLASH: learner 'gd'" in out
    run = cli("evaluate", "--learners", "zero", "--out", str(tmp_path / "out"), "--device", "cpu", env=env)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 2 and "by plugin 'clash' and by plugin 'gradient-descent'" in err


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_keeps_finished_records_and_says_so(tmp_path, plugin, sig, code):
    proc = cli("evaluate", "--plugin", str(plugin), "--learners", "counting[sleep=0.4]", "--seeds", "0,1,2,3,4,5,6,7",
               "--n-tasks", "16", "--device", "cpu", "--out", str(tmp_path / "out"))
    results = tmp_path / "out" / "results.jsonl"
    deadline = time.time() + 120
    while not (results.exists() and results.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert f"interrupted by {signal.Signals(sig).name}; finished records are kept" in err
    kept = lines(results)
    assert 1 <= len(kept) < 8 and all(r["status"] == "ok" for r in kept)


def test_concurrent_evaluations_share_one_folder(tmp_path, plugin):
    args = ["evaluate", "--plugin", str(plugin), "--learners", "counting[sleep=0.3],zero", "--seeds", "0,1,2",
            "--n-tasks", "32", "--device", "cpu", "--quiet", "--out", str(tmp_path / "out")]
    procs = [cli(*args) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    recs = lines(tmp_path / "out" / "results.jsonl")
    keys = [record_key(r) for r in recs]
    assert len(keys) == len(set(keys)) == 6  # 2 learners x 3 seeds, none twice
    fits = (tmp_path / "fits.log").read_text().splitlines()
    assert len(fits) == 3  # each seed's learner fitted once across the three processes
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*.tmp"))


def read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:  # the process ended meanwhile
        return ""


def children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        text = read(str(stat))
        if text and int(text.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    text = read(f"/proc/{pid}/stat")
    return bool(text) and text.rsplit(")", 1)[1].split()[0] != "Z"


LONG_SPEC = """
name = "long"
description = "one long training per seed"
[budgets.full]
train_steps = 1000000
n_tasks = 16
[[runs]]
suite = "linear"
learners = ["lsa[train.batch_size=64]"]
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_signal_stops_the_training_workers_too(tmp_path):
    """Trainings in worker processes (reproduce --jobs) end with the run, not after it, holding their locks."""
    (tmp_path / "long.toml").write_text(LONG_SPEC)
    plugin = tmp_path / "long_repro.py"
    plugin.write_text("import iclbench\nfrom pathlib import Path\nfrom iclbench.reproduce import Reproduction\n"
                      "class Long(Reproduction):\n    name = 'long'\n"
                      f"    spec_file = Path({str(tmp_path / 'long.toml')!r})\n"
                      "@iclbench.hookimpl\ndef register_reproductions(register):\n    register(Long)\n")
    proc = cli("reproduce", "long", "--plugin", str(plugin), "--seeds", "0,1", "--jobs", "2", "--device", "cpu",
               "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    deadline, workers = time.time() + 120, set()
    try:
        while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
            workers = {p for p in children(proc.pid) if "spawn_main" in read(f"/proc/{p}/cmdline")}  # not the tracker
            time.sleep(0.2)
        assert len(workers) == 2, proc.communicate(timeout=10)
        time.sleep(3)  # into their trainings
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        deadline = time.time() + 10
        while any(running(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if running(p)]
    finally:  # a failure leaves nothing running
        proc.kill()
        for p in workers:
            if running(p):
                os.kill(p, signal.SIGKILL)
