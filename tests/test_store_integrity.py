"""Stored records and checkpoints stay what they claim: torn lines are cut off, non-finite
markers become floats only where numbers were written, malformed records are skipped with a
warning naming file:line and field, bad checkpoints are retrained, dead writers' temporaries
are cleaned up, and a full disk says which file could not be written."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from iclbench.checkpoints import Checkpoint, cache_dir
from iclbench.cli import main
from iclbench.locks import atomic_write
from iclbench.store import ResultStore, read_records, record_key

TINY = {"steps": 20, "batch_size": 64, "eval_tasks": 64, "eval_every": 10, "checkpoint_every": 10}


def rec(seed: int = 0, loss: float = 0.5, **extra) -> dict:
    return {"learner": "gd", "label": "gd", "learner_config": {"steps": 1}, "suite": "linear",
            "task": "linear-regression", "task_label": "linear", "task_config": {}, "seed": seed,
            "n_tasks": 100, "align_to": None, "status": "ok", "metrics": {"loss": loss}, **extra}


def read_quietly(path) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_records(path)


# --- torn lines ------------------------------------------------------------------------------

def test_append_cuts_a_torn_last_line_so_the_file_is_whole_json_lines_again(tmp_path):
    store = ResultStore(tmp_path)
    store.append(rec(seed=0))
    with open(store.path, "a") as f:
        f.write(json.dumps(rec(seed=1)))  # whole, only its newline missing: kept
    store.append(rec(seed=2))
    with open(store.path, "a") as f:
        f.write(json.dumps(rec(seed=3))[:40])  # killed mid-write
    size = store.size()
    with pytest.warns(UserWarning, match=r"results.jsonl:4: dropped a torn last line \(40 bytes"):
        before, after = store.append(rec(seed=4))
    assert before == size  # as a reader saw it: nobody else wrote in between
    lines = store.path.read_text().splitlines(keepends=True)
    assert all(line.endswith("\n") for line in lines) and after == store.size()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1, 2, 4]
    assert [r["seed"] for r in read_quietly(store.path)] == [0, 1, 2, 4]  # no warning on any later read


def test_a_failed_append_cuts_its_own_partial_line_and_names_the_file(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.append(rec(seed=0))
    text = store.path.read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"could not append a record to .*results.jsonl \(the disk is full\)") as err:
        store.append(rec(seed=1))
    assert err.value.errno == errno.ENOSPC
    assert store.path.read_text() == text


# --- non-finite numbers ----------------------------------------------------------------------

ODD = {"label": "NaN", "task_label": "Infinity", "group": "-Infinity",
       "learner_config": {"mode": "NaN", "clip": math.inf},
       "metrics": {"loss": math.nan, "loss_ci95": math.inf, "sens_cos": -math.inf, "median": 0.5},
       "position_curve": {"t": [1, 2], "loss": [0.5, math.nan]}}


def test_labels_spelled_like_nonfinite_numbers_stay_strings(tmp_path):
    store = ResultStore(tmp_path)
    record = rec(**ODD)
    store.append(record)
    (back,) = read_quietly(store.path)
    assert (back["label"], back["task_label"], back["group"]) == ("NaN", "Infinity", "-Infinity")
    assert back["learner_config"]["mode"] == "NaN" and back["learner_config"]["clip"] == math.inf
    m = back["metrics"]
    assert math.isnan(m["loss"]) and m["loss_ci95"] == math.inf and m["sens_cos"] == -math.inf and m["median"] == 0.5
    assert back["position_curve"]["loss"][0] == 0.5 and math.isnan(back["position_curve"]["loss"][1])
    assert record_key(back) == record_key(record)  # a rerun finds it stored
    assert "_nonfinite" not in back and set(back) == set(record)


def test_written_lines_say_where_their_nonfinite_numbers_are(tmp_path):
    store = ResultStore(tmp_path)
    store.append(rec(seed=0, **ODD))
    store.append(rec(seed=1))
    odd, plain = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert sorted(odd["_nonfinite"]) == [["learner_config", "clip"], ["metrics", "loss"], ["metrics", "loss_ci95"],
                                         ["metrics", "sens_cos"], ["position_curve", "loss", 1]]
    assert odd["metrics"]["loss"] == "NaN" and odd["task_label"] == "Infinity"  # still strict JSON strings
    assert "_nonfinite" not in plain  # a line without marker strings needs no list


def test_a_label_Infinity_is_reused_on_a_rerun_instead_of_appended_again(tmp_path):
    suite = tmp_path / "odd.toml"
    suite.write_text('name = "odd-labels"\n[train]\ntask = "linear-regression"\nconfig = { d = 3, N = 5 }\n'
                     '[[eval]]\nlabel = "Infinity"\ntask = "linear-regression"\nconfig = { d = 3, N = 5 }\n'
                     'in_distribution = true\n')
    args = ["evaluate", "--suite", str(suite), "--learners", "zero", "--seeds", "0", "--n-tasks", "16",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    first = (tmp_path / "out" / "results.jsonl").read_text()
    assert main(args) == 0
    assert (tmp_path / "out" / "results.jsonl").read_text() == first  # reused, not measured again
    (r,) = read_quietly(tmp_path / "out")
    assert r["task_label"] == "Infinity"


def test_lines_of_earlier_versions_restore_markers_in_numeric_fields_only(tmp_path):
    """Written before `_nonfinite`: markers anywhere, no list saying where."""
    legacy = {**rec(), "label": "NaN", "task_label": "Infinity", "learner_config": {"mode": "-Infinity"},
              "metrics": {"loss": "NaN", "loss_ci95": "Infinity"}, "seconds": "Infinity",
              "position_sensitivity": {"t": [1], "sens_cos": ["-Infinity"], "ci95": ["NaN"]},
              "fit_info": {"curve": [{"step": 10, "train_loss": "NaN"}]}, "hyperparameters": {"eta": ["Infinity"]}}
    (tmp_path / "results.jsonl").write_text(json.dumps(legacy) + "\n")
    (r,) = read_quietly(tmp_path)
    assert (r["label"], r["task_label"], r["learner_config"]["mode"]) == ("NaN", "Infinity", "-Infinity")
    assert math.isnan(r["metrics"]["loss"]) and r["metrics"]["loss_ci95"] == math.inf and r["seconds"] == math.inf
    assert r["position_sensitivity"]["sens_cos"] == [-math.inf] and math.isnan(r["position_sensitivity"]["ci95"][0])
    assert math.isnan(r["fit_info"]["curve"][0]["train_loss"]) and r["hyperparameters"]["eta"] == [math.inf]


def test_a_nonfinite_list_that_points_elsewhere_is_an_invalid_record(tmp_path):
    lines = [json.dumps({**rec(), "metrics": {"loss": 0.5}, "_nonfinite": [["metrics", "loss"]]}),
             json.dumps({**rec(), "_nonfinite": [["metrics", "nope"]]}),
             json.dumps({**rec(), "_nonfinite": "metrics"}),
             json.dumps({**rec(seed=7), "metrics": {"loss": "NaN"}, "_nonfinite": [["metrics", "loss"]]})]
    (tmp_path / "results.jsonl").write_text("".join(line + "\n" for line in lines))
    with pytest.warns(UserWarning) as caught:
        records = read_records(tmp_path)
    assert [r["seed"] for r in records] == [7] and math.isnan(records[0]["metrics"]["loss"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3 and all("field _nonfinite" in m for m in messages)
    assert ":1: " in messages[0] and "leads to 0.5" in messages[0] and ":2: " in messages[1] and ":3: " in messages[2]


# --- records that are not what they claim ----------------------------------------------------

BAD = [
    ("[1, 2]", r"the line is an array"),
    ("{}", r"field suite is missing"),
    ("null", r"the line is null"),
    ('"a string"', r"the line is a string"),
    ("7", r"the line is a number"),
    (json.dumps(rec(metrics={"loss": "abc"})), r"field metrics\.loss is 'abc' \(input should be a valid number\)"),
    (json.dumps(rec(metrics={"loss": True})), r"field metrics\.loss is True"),
    (json.dumps(rec(label=5)), r"field label is 5 \(input should be a valid string\)"),
    (json.dumps({k: v for k, v in rec().items() if k != "metrics"}), r"field metrics is missing"),
    (json.dumps(rec(metrics=[0.5])), r"field metrics is \[0\.5\]"),
    (json.dumps(rec(status="weird")), r"field status is 'weird' \(input should be 'ok', 'diverged' or 'failed'\)"),
    (json.dumps(rec(seed="0")), r"field seed is '0'"),
    (json.dumps(rec(n_tasks=1.5)), r"field n_tasks is 1\.5"),
    (json.dumps(rec(position_curve={"loss": ["x"]})), r"field position_curve\.loss\.0 is 'x'"),
]


@pytest.mark.parametrize("line,why", BAD, ids=[b[1][:30] for b in BAD])
def test_a_line_that_is_not_a_valid_record_is_skipped_naming_file_line_and_field(tmp_path, line, why):
    (tmp_path / "results.jsonl").write_text(f"{json.dumps(rec(seed=0))}\n{line}\n{json.dumps(rec(seed=1))}\n")
    with pytest.warns(UserWarning) as caught:
        records = ResultStore(tmp_path).records()
    assert [r["seed"] for r in records] == [0, 1]
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{tmp_path / 'results.jsonl'}:2: skipping an invalid record: ")
    assert re.search(why, message), message


def test_leaderboard_renders_around_records_that_are_not_records(tmp_path, capsys):
    good = [rec(seed=s, loss=0.5 + s / 10, in_distribution=True) for s in (0, 1)]
    bad = ["[1, 2]", "{}", "null", json.dumps(rec(seed=2, metrics={"loss": "abc"})),
           json.dumps(rec(seed=3, status="weird"))]
    lines = [json.dumps(good[0]), *bad, json.dumps(good[1])]
    (tmp_path / "results.jsonl").write_text("".join(line + "\n" for line in lines))
    with pytest.warns(UserWarning, match="skipping an invalid record"):
        assert main(["leaderboard", str(tmp_path), "--format", "md", "--no-plots"]) == 0
    md = (tmp_path / "leaderboard" / "leaderboard.md").read_text()
    assert "0.55" in md and "weird" not in md and "abc" not in md


def test_analyses_are_checked_against_their_own_schema(tmp_path):
    good = {"analysis": "interpolate", "config": {"learner": "NaN"}, "suite": "linear", "seed": 0,
            "result": {"loss": "NaN", "learner": "lsa"}}  # written before `_nonfinite`
    bad = {"config": {}, "suite": "linear", "seed": 0, "result": {}}
    (tmp_path / "analyses.jsonl").write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n")
    with pytest.warns(UserWarning, match=r"analyses.jsonl:2: skipping an invalid record: field analysis is missing"):
        (a,) = read_records(tmp_path / "analyses.jsonl")
    assert a["config"]["learner"] == "NaN" and math.isnan(a["result"]["loss"]) and a["result"]["learner"] == "lsa"
    store = ResultStore(tmp_path / "new", "analyses.jsonl")
    store.append({**good, "result": {"loss": math.nan, "learner": "NaN"}})
    (b,) = read_quietly(store.path)
    assert math.isnan(b["result"]["loss"]) and b["result"]["learner"] == "NaN"


# --- checkpoints -----------------------------------------------------------------------------

def state(**changes) -> dict:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters())
    good = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 10, "curve": [{"step": 10}],
            "generator": torch.Generator().manual_seed(0).get_state(), "done": False, "seconds": 1.5}
    return {**good, **changes}


WRONG = [("step", "abc"), ("step", -1), ("step", True), ("step", 1.0), ("done", "yes"), ("seconds", "1.5"),
         ("seconds", math.nan), ("curve", {"step": 10}), ("model", {"weight": [1.0]}), ("optimizer", [1]),
         ("generator", [0, 1])]


@pytest.mark.parametrize("field,value", WRONG, ids=[f"{f}={v!r}" for f, v in WRONG])
def test_a_checkpoint_with_a_wrongly_typed_field_is_discarded_naming_file_and_field(tmp_path, field, value):
    ckpt = Checkpoint(tmp_path, "key")
    torch.save(state(**{field: value}), ckpt.path)
    with pytest.warns(UserWarning) as caught:
        assert ckpt.load() is None
    (message,) = [str(w.message) for w in caught]
    assert str(ckpt.path) in message and f"has {field} = " in message and "retrained" in message
    assert not ckpt.path.exists()
    torch.save(state(), ckpt.path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ckpt.load()["step"] == 10  # a right one is kept


def test_training_retrains_over_a_checkpoint_whose_step_is_not_a_number(catalog, linear, tmp_path):
    with cache_dir(tmp_path):
        catalog.learners["lsa"]({"train": TINY}).fit(linear, generator=torch.Generator().manual_seed(1), device="cpu")
    (path,) = tmp_path.glob("*.pt")
    saved = torch.load(path, weights_only=True)
    torch.save({**saved, "step": "abc", "done": False}, path)
    with pytest.warns(UserWarning, match=f"checkpoint {path} has step = 'abc'.*retrained"), cache_dir(tmp_path):
        learner = catalog.learners["lsa"]({"train": TINY})
        learner.fit(linear, generator=torch.Generator().manual_seed(1), device="cpu")
    assert learner.fit_info()["resumed_at"] is None and torch.load(path, weights_only=True)["done"] is True


HOST = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40].strip("-") or "host"
"""This host as temporaries' names spell it."""


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"partial")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_temporaries_of_dead_writers_are_removed_when_the_cache_is_used(tmp_path):
    dead, host, hour, day = dead_pid(), HOST, 3600, 2 * 24 * 3600
    gone = [aged(tmp_path / f".a.pt.{dead}@{host}.0123abcd.tmp", hour),  # this host, writer dead, idle
            aged(tmp_path / f".b.pt.{dead}@elsewhere.0123abcd.tmp", day),  # another host: only after a day idle
            aged(tmp_path / f".c.pt.{dead}.0123abcd.tmp", day)]  # an older name, without the host
    kept = [aged(tmp_path / f".d.pt.{os.getpid()}@{host}.0123abcd.tmp", hour),  # writer alive
            aged(tmp_path / f".e.pt.{dead}@{host}.0123abcd.tmp", 5),  # just written to
            aged(tmp_path / f".f.pt.{dead}@elsewhere.0123abcd.tmp", hour),  # another host's, could be alive
            aged(tmp_path / f".g.json.{dead}@{host}.0123abcd.tmp", hour),  # not a checkpoint's
            aged(tmp_path / ".notes.tmp", day)]
    assert Checkpoint(tmp_path, "key").load() is None
    assert [p.exists() for p in gone] == [False] * len(gone)
    assert [p.exists() for p in kept] == [True] * len(kept)


def test_a_temporary_names_its_writer_process_and_host(tmp_path):
    names = []
    atomic_write(tmp_path / "x.pt", lambda tmp: (names.append(tmp.name), tmp.write_bytes(b"1")))
    (name,) = names
    assert re.fullmatch(rf"\.x\.pt\.{os.getpid()}@{HOST}\.[0-9a-f]{{8}}\.tmp", name), name


DiskUsage = namedtuple("DiskUsage", "total used free")
ENFORCE = "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"


def failing_save(err: BaseException):
    def save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpo")
        raise err
    return save


def test_a_full_disk_while_checkpointing_names_the_file(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path, "key")
    monkeypatch.setattr(torch, "save", failing_save(RuntimeError(ENFORCE)))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: DiskUsage(10**9, 10**9 - 100, 100))
    with pytest.raises(OSError, match=rf"checkpoint {ckpt.path} could not be written: the disk is full "
                                      r"\(100 bytes free in .*, the checkpoint needs about") as err:
        ckpt.save(state())
    assert err.value.errno == errno.ENOSPC and isinstance(err.value.__cause__, RuntimeError)
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary left


def test_a_torch_write_failure_with_space_left_is_not_called_a_full_disk(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path, "key")
    monkeypatch.setattr(torch, "save", failing_save(RuntimeError(ENFORCE)))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: DiskUsage(10**12, 10**11, 9 * 10**11))
    with pytest.raises(RuntimeError, match=rf"checkpoint {ckpt.path} could not be written \(.* free") as err:
        ckpt.save(state())
    assert "disk is full" not in str(err.value) and "enforce fail" in str(err.value)


def test_an_out_of_space_oserror_names_the_checkpoint(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path, "key")
    monkeypatch.setattr(torch, "save", failing_save(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError, match=rf"checkpoint {ckpt.path} could not be written: the disk is full") as err:
        ckpt.save(state())
    assert err.value.errno == errno.ENOSPC


def test_an_interruption_after_the_whole_line_is_written_keeps_the_record(tmp_path, monkeypatch):
    """Ctrl-C arriving while the line is being fsynced must not cut a finished record."""
    import os as _os

    from iclbench.store import ResultStore
    from iclbench.watchdog import Interrupted

    store = ResultStore(tmp_path)
    real_fsync = _os.fsync

    def interrupted(fd):
        raise Interrupted(2)

    monkeypatch.setattr("iclbench.store.os.fsync", interrupted)
    with pytest.raises(Interrupted):
        store.append({"suite": "s", "label": "l", "task_label": "t", "seed": 0, "metrics": {"loss": 1.0}})
    monkeypatch.setattr("iclbench.store.os.fsync", real_fsync)
    assert [r["label"] for r in store.records()] == ["l"]
