"""A stored number is reused only for the exact code that made it: the core, the learner's and
the task's modules with what they import from their own place."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import iclbench
from iclbench import codehash
from iclbench.cli import main

PLUGIN = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, os.path.dirname(__file__))
    import iclbench
    import edited_helper

    class Constant(iclbench.Learner):
        name = 'constant'
        def predict(self, episode):
            return 0 * episode.query_x[:, :1] + edited_helper.VALUE

    @iclbench.hookimpl
    def register_learners(register):
        register(Constant)
    """)


def evaluate(out, plugin):
    assert main(["evaluate", "--plugin", str(plugin), "--learners", "constant", "--suite", "linear",
                 "--n-tasks", "64", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_editing_a_module_a_plugin_file_imports_recomputes_and_nothing_else_does(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    plugin, helper, out = tmp_path / "constant.py", tmp_path / "edited_helper.py", tmp_path / "out"
    plugin.write_text(PLUGIN)
    helper.write_text("VALUE = 0.0\n")
    first = evaluate(out, plugin)
    assert len(evaluate(out, plugin)) == len(first)  # nothing changed: everything reused
    sys.modules.pop("edited_helper", None)
    helper.write_text("VALUE = 1.0  # edited\n")
    records = evaluate(out, plugin)
    assert len(records) == 2 * len(first)  # the edit made every number anew
    old, new = records[0], records[len(first)]
    assert old["metrics"]["loss"] != new["metrics"]["loss"]
    assert old["provenance"]["learner"]["sha256"] == new["provenance"]["learner"]["sha256"]  # the file itself is the same
    assert old["provenance"]["learner"]["code"] != new["provenance"]["learner"]["code"]
    assert new["git_dirty"] in (True, False, None) and new["git_dirty"] == codehash.git_dirty()


def test_a_package_plugin_is_its_modules_closure(tmp_path, monkeypatch):
    pkg = tmp_path / "iclpkg_under_test"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "learner.py").write_text("from .sub import prims\nimport json\nX = prims.Y\n")
    (pkg / "sub" / "prims.py").write_text("Y = 1\n")
    (pkg / "unrelated.py").write_text("Z = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("iclpkg_under_test.learner")
    before = codehash.module_digest("iclpkg_under_test.learner")
    (pkg / "unrelated.py").write_text("Z = 2\n")
    assert codehash.module_digest("iclpkg_under_test.learner") == before  # not imported: not part of it
    (pkg / "sub" / "prims.py").write_text("Y = 2  # edited\n")
    assert codehash.module_digest("iclpkg_under_test.learner") != before  # imported through a relative import
    files = {p.relative_to(pkg).as_posix() for p in codehash.compute_digest("iclpkg_under_test.learner")[1]}
    assert files == {"__init__.py", "learner.py", "sub/__init__.py", "sub/prims.py"}


def test_built_in_learners_are_keyed_on_their_own_modules():
    from iclbench.catalog import default_catalog

    cat = default_catalog()
    lsa, gd, zero = (codehash.class_digest(cat.learners[n]) for n in ("lsa", "gd", "zero"))
    assert len({lsa, gd, zero}) == 3 and all(len(d) == 64 for d in (lsa, gd, zero))
    files = {p.name for p in codehash.compute_digest(cat.learners["lsa"].__module__)[1]}
    assert {"lsa.py", "model.py", "gradient_descent.py"} <= files  # what the transformer imports counts
    assert codehash.core_digest() == codehash.core_digest() and len(codehash.core_digest()) == 64


def test_checkpoints_are_keyed_on_the_code(tmp_path, monkeypatch):
    from iclbench.catalog import default_catalog
    from iclbench.checkpoints import cache_dir, training_checkpoint

    import torch

    cat = default_catalog()
    learner, task = cat.learners["lsa"](), cat.tasks["linear-regression"]()
    gen = torch.Generator().manual_seed(0)
    with cache_dir(tmp_path):
        same = training_checkpoint(learner, task, gen).path
        assert training_checkpoint(cat.learners["lsa"](), cat.tasks["linear-regression"](), gen).path == same
        monkeypatch.setattr(codehash, "class_digest", lambda cls: "another" if cls is type(learner) else "x")
        assert training_checkpoint(learner, task, gen).path != same


def test_the_core_digest_covers_the_code_that_computes_and_not_the_report_layer():
    """Editing a table, a plot, the site or the CLI reuses every record; editing the runner,
    metrics, training loops, tuning or the plugin API does not."""
    names = {p.name for p in codehash.core_files()}
    for computing in ("runner.py", "metrics.py", "training.py", "stacked.py", "pretrain.py", "tuning.py", "analysis.py",
                      "episode.py", "task.py", "learner.py", "prefix.py", "positions.py", "seeding.py", "plugin_api.py",
                      "__init__.py", "codehash.py", "checkpoints.py"):
        assert computing in names, computing
    for reporting in ("board.py", "cells.py", "tables.py", "plotting.py", "shift_plots.py", "prefix_plot.py", "site.py",
                      "site_html.py", "site_tables.py", "site_summary.py", "ranking.py", "styles.py", "verdicts.py",
                      "publish.py", "report_text.py", "cli.py", "commands.py", "describe.py"):
        assert reporting not in names, reporting
    root = Path(iclbench.__file__).resolve().parent
    closed = set(codehash.core_files())
    for path in closed:  # closed under imports: whatever a counted module imports from the core is counted
        module = "iclbench" if path.name == "__init__.py" else f"iclbench.{path.stem}"
        assert set(codehash.closure(path, root, "iclbench", module)) <= closed, path.name
