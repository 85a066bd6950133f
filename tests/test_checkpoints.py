"""Checkpoint cache: unreadable files are retrained, writes are atomic, one process trains a
key while others wait for it, and execution-only options share a key."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch

import iclbench.training as training
from iclbench.checkpoints import Checkpoint, cache_dir
from iclbench.locks import file_lock

TINY = {"steps": 20, "batch_size": 64, "eval_tasks": 64, "eval_every": 10, "checkpoint_every": 10}


def fit(catalog, task, **train):
    """A small `lsa` fitted on `task` with seed 1, the training config TINY updated by `train`."""
    learner = catalog.learners["lsa"]({"train": {**TINY, **train}})
    learner.fit(task, generator=torch.Generator().manual_seed(1), device="cpu")
    return learner


def weights(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def saved_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clean(catalog, linear, tmp_path_factory):
    """A training into an empty cache: its weights, checkpoint file name and bytes."""
    folder = tmp_path_factory.mktemp("clean")
    with cache_dir(folder):
        learner = fit(catalog, linear)
    (path,) = folder.glob("*.pt")
    return {"weights": weights(learner), "name": path.name, "bytes": path.read_bytes()}


def corrupt(kind: str, clean_bytes: bytes) -> bytes:
    if kind == "garbage":
        return b"certainly not a checkpoint\x00\x01\x02" * 8
    if kind == "empty":
        return b""
    if kind == "truncated":
        return clean_bytes[: len(clean_bytes) // 2]
    if kind == "not-a-state":
        return saved_bytes([torch.zeros(3), 1.0])
    if kind == "missing-keys":
        return saved_bytes({"model": {}, "done": True})
    state = torch.load(io.BytesIO(clean_bytes), weights_only=True)  # "foreign-weights"
    return saved_bytes({**state, "model": {"bogus": torch.zeros(3)}})


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "not-a-state", "missing-keys", "foreign-weights"])
def test_unreadable_checkpoint_is_discarded_and_retrained(catalog, linear, clean, tmp_path, capsys, kind):
    path = tmp_path / clean["name"]
    path.write_bytes(corrupt(kind, clean["bytes"]))
    with warnings.catch_warnings(record=True) as caught, cache_dir(tmp_path):
        warnings.simplefilter("always")
        learner = fit(catalog, linear)
    messages = [str(w.message) for w in caught]
    assert any(str(path) in m and "discarded" in m and "retrained" in m for m in messages), messages
    assert not any("weights_only" in m for m in messages + [capsys.readouterr().err])
    info = learner.fit_info()
    assert not info["from_cache"] and info["resumed_at"] is None
    assert same(weights(learner), clean["weights"])  # retrained from scratch, as in an empty cache
    assert Checkpoint(tmp_path, path.stem).load()["done"]  # the bad file was replaced by a good one


def test_unreadable_checkpoint_file_is_deleted(tmp_path):
    ckpt = Checkpoint(tmp_path, "key")
    ckpt.path.write_bytes(b"\x80\x02junk")
    with pytest.warns(UserWarning, match="discarded"):
        assert ckpt.load() is None
    assert not ckpt.path.exists()
    assert Checkpoint(tmp_path, "absent").load() is None


def test_concurrent_saves_use_unique_temp_names(tmp_path, monkeypatch):
    """Another writer renames its file into place while this one is between writing and renaming."""
    ckpt, real_save, written = Checkpoint(tmp_path, "key"), torch.save, []

    def racing_save(obj, f, *args, **kwargs):
        written.append(Path(f))
        real_save(obj, f, *args, **kwargs)
        if len(written) == 1:
            ckpt.save({"writer": 2})

    monkeypatch.setattr(torch, "save", racing_save)
    ckpt.save({"writer": 1})
    assert len(set(written)) == 2 and ckpt.path not in written
    assert torch.load(ckpt.path, weights_only=True) == {"writer": 1}  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["key.pt"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path, "key")
    ckpt.save({"writer": 1})
    before = ckpt.path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpo")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save({"writer": 2})
    assert ckpt.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["key.pt"]


def test_file_lock_waits_and_says_so(tmp_path):
    lock, waited, acquired = tmp_path / "x.lock", threading.Event(), threading.Event()

    def contender():
        with file_lock(lock, on_wait=waited.set):
            acquired.set()

    with file_lock(lock):
        thread = threading.Thread(target=contender)
        thread.start()
        assert waited.wait(10)
        assert not acquired.wait(0.2)  # blocked while the lock is held
    thread.join(10)
    assert acquired.is_set()


CONTENDER_IMPORTS = """
import json, sys, time
from pathlib import Path
from typing import Callable
import torch
import iclbench.training as training
from iclbench.catalog import build_catalog
from iclbench.checkpoints import cache_dir
from iclbench.plugins import make_plugin_manager
"""
CONTENDER_MAIN = """
cache, train = Path(sys.argv[1]), json.loads(sys.argv[2])
torch.set_num_threads(1)
catalog = build_catalog(make_plugin_manager())
learner, task = catalog.learners["lsa"]({"train": train}), catalog.tasks["linear-regression"]()
learner.fit(task, generator=torch.Generator().manual_seed(1), device="cpu")  # warm-up, uncached
training.evaluate_row = slowed(training.evaluate_row)
meet(cache, "child", "parent")
with cache_dir(cache):
    learner.fit(task, generator=torch.Generator().manual_seed(1), device="cpu")
info = learner.fit_info()
print(json.dumps({"from_cache": info["from_cache"], "resumed_at": info["resumed_at"],
                  "weights": [p.tolist() for p in learner.model.parameters()]}))
"""


def slowed(evaluate_row):
    """`evaluate_row` taking 0.5 s longer: a training long enough that two processes surely overlap."""
    def slow(*args, **kwargs):
        time.sleep(0.5)
        return evaluate_row(*args, **kwargs)
    return slow


def meet(folder: Path, me: str, other: str, alive: Callable[[], bool] = lambda: True) -> None:
    """A two-process barrier: mark `me` ready in `folder`, then wait for `other` while it is alive."""
    (folder / f"ready-{me}").touch()
    deadline = time.monotonic() + 300  # a loaded machine may take a minute to import torch and warm up
    while not (folder / f"ready-{other}").exists():
        assert alive() and time.monotonic() < deadline, f"{other} never got ready"
        time.sleep(0.01)


def test_two_processes_train_one_key_once(catalog, linear, tmp_path, monkeypatch):
    """This process and a child train the same learner into one cache, starting together."""
    script, cache = tmp_path / "contender.py", tmp_path / "cache"
    script.write_text(CONTENDER_IMPORTS + inspect.getsource(slowed) + inspect.getsource(meet) + CONTENDER_MAIN)
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ICLBENCH_CACHE"} | {"TQDM_DISABLE": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(cache), json.dumps(TINY)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fit(catalog, linear)  # warm-up, uncached: both trainings then start within milliseconds
        monkeypatch.setattr(training, "evaluate_row", slowed(training.evaluate_row))
        meet(cache, "parent", "child", alive=lambda: child.poll() is None)
        with cache_dir(cache):
            mine = fit(catalog, linear)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    theirs = json.loads(out.strip().splitlines()[-1])
    # exactly one trained; the other waited for the lock, then loaded the finished checkpoint
    assert sorted([mine.fit_info()["from_cache"], theirs["from_cache"]]) == [False, True]
    assert mine.fit_info()["resumed_at"] is None and theirs["resumed_at"] is None
    assert [p.tolist() for p in weights(mine)] == theirs["weights"]
    assert len(list(cache.glob("*.pt"))) == 1


def test_execution_only_options_share_a_checkpoint(catalog, linear, tmp_path):
    with cache_dir(tmp_path):
        base = fit(catalog, linear)
        rarer_checkpoints = fit(catalog, linear, checkpoint_every=20)
        denser_evaluation = fit(catalog, linear, eval_every=5)
        longer = fit(catalog, linear, steps=30)
    assert not base.fit_info()["from_cache"]
    assert rarer_checkpoints.fit_info()["from_cache"] and denser_evaluation.fit_info()["from_cache"]
    assert same(weights(rarer_checkpoints), weights(base)) and same(weights(denser_evaluation), weights(base))
    assert not longer.fit_info()["from_cache"]
    assert len(list(tmp_path.glob("*.pt"))) == 2
