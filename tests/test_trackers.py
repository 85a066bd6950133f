"""Trackers: TensorBoard and W&B mirror each training's curve; results.jsonl stays the truth."""

from __future__ import annotations

import contextvars
import os
import struct
import warnings
from pathlib import Path

import pytest
import torch

import iclbench
from iclbench.catalog import build_catalog
from iclbench.checkpoints import cache_dir
from iclbench.cli import main
from iclbench.plugins import make_plugin_manager
from iclbench.store import read_all
from iclbench.tracking import TRACK_DIR_ENV, TRACK_ENV, Tracker, active, select, tracking

TRAIN = "train.steps=20,train.batch_size=64,train.eval_every=5,train.eval_tasks=64,train.checkpoint_every=10"
LEARNER = f"lsa[{TRAIN}]"
STEPS = [5, 10, 15, 20]


def evaluate(out: Path, *extra: str) -> int:
    return main(["evaluate", "--learners", LEARNER, "--task", "linear-regression", "--task-config", "d=3,N=6",
                 "--n-tasks", "64", "--device", "cpu", "--quiet", "--out", str(out), *extra])


def stored_curve(out: Path) -> list[dict[str, float]]:
    (record,) = read_all([out])
    return record["fit_info"]["curve"]


def test_tensorboard_mirrors_the_stored_curve(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert evaluate(tmp_path, "--track", "tensorboard") == 0
    curve = stored_curve(tmp_path)
    (run,) = (tmp_path / "tracking" / "tensorboard").iterdir()
    assert run.name.startswith("lsa[") and run.name.endswith("linear-regression[N=6,d=3]-seed0")
    events = EventAccumulator(str(run))
    events.Reload()
    columns = [k for k in curve[0] if k != "step"]
    assert {"eval_loss", "train_loss", "sens_cos_gd1"} <= set(columns)
    assert set(columns) <= set(events.Tags()["scalars"])
    for key in columns:
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(row["step"], pytest.approx(row[key], rel=1e-6)) for row in curve]
    assert [row["step"] for row in curve] == STEPS


def wandb_records(path: Path):
    """The protobuf records of a `.wandb` file: W&B's log framing (a 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header: crc, length, type) around its Records."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunks, block = path.read_bytes(), 7, [], 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def test_wandb_offline_mirrors_the_stored_curve(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install iclbench[tracking])")
    import json

    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    try:
        assert evaluate(tmp_path / "out", "--track", "wandb", "--track-dir", str(tmp_path / "track")) == 0
    finally:
        wandb.teardown()
    curve = stored_curve(tmp_path / "out")
    (run,) = (tmp_path / "track" / "wandb").glob("offline-run-*")
    (log,) = run.glob("*.wandb")
    records = list(wandb_records(log))
    (info,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert info.display_name.endswith("linear-regression[N=6,d=3]-seed0")
    config = {item.key: json.loads(item.value_json) for item in info.config.update}
    assert config["learner"] == LEARNER.replace("train.eval_every=5,", "").replace(",train.checkpoint_every=10", "")
    assert config["seed"] == 0 and config["train"]["steps"] == 20
    history = [(r.history.step.num, {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                     for item in r.history.item})
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [step for step, _ in history] == [row["step"] for row in curve] == STEPS
    for (_, logged), row in zip(history, curve):
        assert {k: logged[k] for k in row if k != "step"} == {k: v for k, v in row.items() if k != "step"}


def test_unknown_tracker_is_a_usage_error_before_anything_runs(tmp_path, capsys):
    assert evaluate(tmp_path, "--track", "tensorboard,tensorbored") == 2
    err = capsys.readouterr().err
    assert "--track" in err and "'tensorbored'" in err and "tensorboard" in err and "wandb" in err
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "tracking").exists()


def test_tracker_without_its_package_names_the_install(tmp_path, capsys):
    plugin = tmp_path / "absent_tracker.py"
    plugin.write_text(
        "import iclbench\nfrom iclbench.tracking import Tracker\n\n"
        "class Absent(Tracker):\n    name = 'absent'\n    requires = ('iclbench_no_such_module',)\n\n"
        "@iclbench.hookimpl\ndef register_trackers(register):\n    register(Absent)\n")
    assert evaluate(tmp_path / "out", "--plugin", str(plugin), "--track", "absent") == 2
    err = capsys.readouterr().err
    assert "'absent'" in err and "iclbench_no_such_module" in err and "pip install iclbench[tracking]" in err


class Boom(Tracker):
    """Fails at every row."""

    name = "boom"

    def log(self, step, values):
        raise RuntimeError("tracker down")


class Recorder(Tracker):
    """Keeps what it was given; raises KeyboardInterrupt at `Recorder.stop_at` (a Ctrl-C mid-training)."""

    name = "recorder"
    runs: list[dict] = []
    stop_at: int | None = None

    def start(self, run_name, config, first_step=0):
        self.run = {"name": run_name, "config": config, "first_step": first_step, "rows": [], "finished": False}
        Recorder.runs.append(self.run)

    def log(self, step, values):
        self.run["rows"].append((step, values))
        if step == Recorder.stop_at:
            raise KeyboardInterrupt

    def finish(self):
        self.run["finished"] = True


class TestTrackers:
    @iclbench.hookimpl
    def register_trackers(self, register):
        register(Boom)
        register(Recorder)


@pytest.fixture
def test_catalog():
    """The built-ins plus the test trackers, registered through a plugin manager."""
    pm = make_plugin_manager()
    pm.add(TestTrackers(), "test-trackers", "tests")
    Recorder.runs, Recorder.stop_at = [], None
    return build_catalog(pm)


def fit(catalog, task, **train):
    learner = catalog.learners["lsa"]({"train": {"steps": 20, "batch_size": 64, "eval_every": 5, "eval_tasks": 64,
                                                 "checkpoint_every": 10, **train}})
    learner.fit(task, generator=torch.Generator().manual_seed(3), device="cpu")
    return learner.fit_info()


def test_a_failing_tracker_never_stops_the_training(test_catalog, tmp_path, monkeypatch):
    monkeypatch.delenv("ICLBENCH_CACHE", raising=False)
    task = test_catalog.tasks["linear-regression"](d=3, N=6)
    untracked = fit(test_catalog, task)
    selection = select("boom,recorder", tmp_path, test_catalog.trackers)
    with tracking(selection), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracked = fit(test_catalog, task)
    assert tracked["curve"] == untracked["curve"]
    failures = [str(w.message) for w in caught if "tracker" in str(w.message)]
    assert len(failures) == 1 and "'boom'" in failures[0] and "tracker down" in failures[0]
    (run,) = Recorder.runs
    assert run["finished"] and run["first_step"] == 0 and run["config"]["seed"] == "g3"
    assert [(step, values) for step, values in run["rows"]] == [
        (row["step"], {k: v for k, v in row.items() if k != "step"}) for row in tracked["curve"]]


def test_a_resumed_training_continues_logging_from_its_step(test_catalog, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = test_catalog.tasks["linear-regression"](d=3, N=6)
    selection = select("tensorboard,recorder", tmp_path / "track", test_catalog.trackers)
    Recorder.stop_at = 15  # after the checkpoint at step 10
    with cache_dir(tmp_path / "cache"), tracking(selection):
        with pytest.raises(KeyboardInterrupt):
            fit(test_catalog, task)
        Recorder.stop_at = None
        info = fit(test_catalog, task)
        again = fit(test_catalog, task)  # from the finished checkpoint: nothing trained, nothing logged
    assert info["resumed_at"] == 10 and again["from_cache"]
    first, resumed = Recorder.runs
    assert first["finished"] and [s for s, _ in first["rows"]] == [5, 10, 15]
    assert resumed["first_step"] == 10 and [s for s, _ in resumed["rows"]] == [15, 20]
    (run,) = (tmp_path / "track" / "tensorboard").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("eval_loss")]
    assert logged == [(row["step"], pytest.approx(row["eval_loss"], rel=1e-6)) for row in info["curve"]]


def test_the_selection_reaches_worker_processes_through_the_environment(test_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv(TRACK_ENV, "stale")
    with tracking(select("tensorboard,recorder", tmp_path, test_catalog.trackers)):
        assert os.environ[TRACK_ENV] == "tensorboard,recorder"
        assert os.environ[TRACK_DIR_ENV] == str(tmp_path.resolve())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            worker = contextvars.Context().run(active)  # a fresh process: only the environment
        assert [cls.name for cls in worker.trackers] == ["tensorboard"] and worker.folder == tmp_path.resolve()
        assert ["'recorder'" in str(w.message) for w in caught] == [True]  # a test plugin's, not installed
        with tracking(None):
            assert TRACK_ENV not in os.environ and active() is None
    assert os.environ[TRACK_ENV] == "stale"
