"""Suites: the built-in TOML suites load from the installed package, with includes and groups."""

from __future__ import annotations

import tomllib
from collections import Counter
from importlib.resources import files

import pytest
import torch

import iclbench
from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.registry import DuplicateNameError
from iclbench.suite import SuiteError


def test_linear_suite(catalog):
    suite = catalog.suites.load("linear", catalog)
    assert suite.train.name == "linear-regression" and suite.train.label == "linear-regression"
    assert [(e.label, e.in_distribution, e.task.label) for e in suite.evals] == [("linear", True, "linear-regression")]


def test_linear_ood_has_29_tasks_in_six_shift_groups(catalog):
    suite = catalog.suites.load("linear-ood", catalog)
    assert len(suite.evals) == 29
    assert suite.evals[0].label == "linear" and suite.evals[0].in_distribution  # included from `linear`
    groups = Counter(e.group for e in suite.evals)
    assert groups == {None: 1, "input range": 6, "teacher scale": 5, "input law": 3, "distractors": 5, "context size": 4,
                      "reference inputs": 5}
    by = {e.label: e for e in suite.evals}
    c = by["input-range=2"].task.config
    assert (c.input_low, c.input_high, by["input-range=2"].value) == (-1.0, 1.0, 2.0)
    assert by["teacher-scale=5"].task.config.teacher_scale == 5.0
    assert by["distractors=8"].task.config.distractors == 8
    assert [by[f"N={n}"].task.config.N for n in (5, 10, 20, 40)] == [5, 10, 20, 40]
    assert suite.train.config == catalog.tasks["linear-regression"]().config


@pytest.mark.parametrize("label", ["input=normal", "input=exponential", "input=laplace"])
def test_input_laws_are_variance_matched_to_the_default(catalog, label):
    ev = next(e for e in catalog.suites.load("linear-ood", catalog).evals if e.label == label)
    x = ev.task.sample(2000, generator=torch.Generator().manual_seed(0), device="cpu").context_x.double()
    assert abs(float(x.var()) * 12 - 1) < 0.03  # Var U(-0.5, 0.5) = 1/12


def test_suites_come_from_the_installed_package(catalog):
    folder = files("iclbench_plugins.suites")
    names = {tomllib.loads(f.read_text())["name"] for f in folder.iterdir() if f.name.endswith(".toml")}
    assert {"linear", "linear-ood"} <= names
    assert names == {n for n in catalog.suites if catalog.suites.owner(n) == "suites"}


def write(path, text):
    path.write_text(text)
    return path


def suite_catalog(tmp_path):
    class LocalSuites:
        @iclbench.hookimpl
        def register_suites(self, register):
            register(tmp_path)

    pm = make_plugin_manager()
    pm.add(LocalSuites(), "local-suites", "test")
    return build_catalog(pm)


def test_a_plugin_suite_can_include_a_builtin_one(tmp_path):
    write(tmp_path / "mine.toml", 'name = "mine"\ninclude = "linear"\n[[eval]]\nlabel = "wide"\n'
          'task = "linear-regression"\nconfig = { input_low = -2.0, input_high = 2.0 }\n')
    catalog = suite_catalog(tmp_path)
    suite = catalog.suites.load("mine", catalog)
    assert [e.label for e in suite.evals] == ["linear", "wide"]
    assert suite.evals[1].task.config.input_high == 2.0


@pytest.mark.parametrize("text,message", [
    ('name = "bad"\n[train]\ntask = "linear-regression"\nconfig = { N = 0 }\n[[eval]]\ntask = "sine"\n',
     "suite 'bad' [train]: invalid config for task 'linear-regression'"),
    ('name = "bad"\n[train]\ntask = "linear-regresion"\n[[eval]]\ntask = "sine"\n',
     "did you mean 'linear-regression'"),
    ('name = "bad"\n[train]\ntask = "sine"\n', "has no [[eval]] entries"),
    ('name = "bad"\n[[eval]]\ntask = "sine"\n', "has no [train] table"),
    ('name = "bad"\ninclude = "bad"\n', "includes itself"),
    ('name = "bad"\n[train]\ntask = "sine"\n[[eval]]\ntask = "sine"\n[[eval]]\ntask = "sine"\n', "repeated eval labels: sine"),
])
def test_bad_suites_name_the_problem(tmp_path, text, message):
    write(tmp_path / "bad.toml", text)
    catalog = suite_catalog(tmp_path)
    with pytest.raises(SuiteError) as err:
        catalog.suites.load("bad", catalog)
    assert message in str(err.value)


def test_suite_file_schema_errors_name_the_file(tmp_path):
    write(tmp_path / "typo.toml", 'name = "typo"\n[train]\ntask = "sine"\n[[evals]]\ntask = "sine"\n')
    with pytest.raises(SuiteError, match=r"typo.toml: evals: Extra inputs are not permitted"):
        suite_catalog(tmp_path)


def test_duplicate_suite_names_name_both_plugins(tmp_path):
    write(tmp_path / "again.toml", 'name = "linear"\n[train]\ntask = "sine"\n[[eval]]\ntask = "sine"\n')
    with pytest.raises(DuplicateNameError, match="suite 'linear' is registered twice") as err:
        suite_catalog(tmp_path)
    assert "plugin 'suites'" in str(err.value) and "plugin 'local-suites'" in str(err.value)
