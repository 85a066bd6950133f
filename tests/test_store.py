"""The results store: append-only JSON lines, record identity, torn lines, provenance."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch

import iclbench
from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.runner import Evaluation, LearnerSpec, Plan
from iclbench.store import ResultStore, git_commit, read_all, read_records, record_key, versions


def rec(learner="gd", seed=0, loss=0.5, **extra):
    return {"learner": learner, "label": learner, "learner_config": {"steps": 1}, "suite": "linear",
            "task": "linear-regression", "task_label": "linear", "task_config": {}, "seed": seed,
            "n_tasks": 100, "dtype": "float32", "device_type": "cpu", "align_to": None,
            "versions": versions(), "metrics": {"loss": loss}, **extra}


def test_append_and_read_back(tmp_path):
    store = ResultStore(tmp_path / "out")
    assert store.records() == []
    store.append(rec(seed=0))
    store.append(rec(seed=1, loss=0.25))
    assert [r["metrics"]["loss"] for r in store.records()] == [0.5, 0.25]
    assert read_records(tmp_path / "out") == read_records(tmp_path / "out" / "results.jsonl") == store.records()
    assert len(read_all([tmp_path / "out", tmp_path / "out"])) == 4
    assert all(line.startswith("{") and line.endswith("}") for line in store.path.read_text().splitlines())
    with pytest.raises(FileNotFoundError, match="no results at"):
        read_records(tmp_path / "nowhere")


def test_record_key_ignores_measurements_but_not_configs():
    a = rec(loss=0.5, seconds=1.0, created_at="x")
    assert record_key(a) == record_key(rec(loss=0.9, seconds=2.0, created_at="y"))
    assert record_key(a) != record_key(rec(seed=1))
    assert record_key(a) != record_key({**a, "learner_config": {"steps": 2}})
    assert record_key(a) != record_key({**a, "dtype": "float64"})
    assert record_key(a) != record_key({**a, "versions": {**a["versions"], "iclbench": "0.0.0"}})


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    store.append(rec(seed=0))
    store.append(rec(seed=1))
    with open(store.path, "a") as f:
        f.write(json.dumps(rec(seed=2))[:40])  # killed mid-write: no closing brace, no newline
    with pytest.warns(UserWarning, match=r"results.jsonl:3: skipping a line that is not JSON \(interrupted write\?\)"):
        records = store.records()
    assert [r["seed"] for r in records] == [0, 1]


def test_a_record_appended_after_a_torn_line_is_kept(tmp_path):
    store = ResultStore(tmp_path)
    store.append(rec(seed=0))
    with open(store.path, "a") as f:
        f.write(json.dumps(rec(seed=1))[:40])
    with pytest.warns(UserWarning, match="dropped a torn last line"):
        store.append(rec(seed=2))  # the next run appends its first record, the torn line cut off
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file is strict JSON lines again: nothing to warn about
        seeds = [r["seed"] for r in store.records()]
    assert seeds == [0, 2]


def test_rerun_after_an_interrupted_write_completes_the_results(tmp_path):
    catalog = build_catalog(make_plugin_manager())
    suite = catalog.suites.load("linear", catalog)
    specs = [LearnerSpec("zero"), LearnerSpec("averaging")]
    store = ResultStore(tmp_path)
    Evaluation(catalog, Plan(specs, suite, [0], n_tasks=100), store).run()
    text = store.path.read_text()
    store.path.write_text(text[: len(text.splitlines()[0]) + 1 + 30])  # 2nd record torn by a kill
    with pytest.warns(UserWarning, match="interrupted write"):
        Evaluation(catalog, Plan(specs, suite, [0], n_tasks=100), store).run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = sorted(r["label"] for r in store.records())
    assert labels == ["averaging", "zero"]


def test_provenance():
    v = versions()
    assert set(v) == {"python", "torch", "iclbench"}
    assert v["torch"] == torch.__version__ and v["iclbench"] == iclbench.__version__
    commit = git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
