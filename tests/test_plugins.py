"""The plugin manager: entry points, broken and misspelt plugins, plugin files, env controls."""

from __future__ import annotations

import importlib.metadata as md
import sys
import warnings

import pluggy
import pytest
import torch

import iclbench
import iclbench.plugins
from iclbench.plugins import PluginFileError, load_plugin_file, make_plugin_manager
from iclbench.catalog import build_catalog

BUILTIN = {"alternating", "baselines", "gradient-descent", "kernels", "least-squares", "linear-regression",
           "sine", "suites", "transformer"}


def test_builtins_are_entry_point_plugins():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every built-in implements a hook: no warning
        pm = make_plugin_manager()
    info = {p.name: p for p in pm.info()}
    assert BUILTIN <= set(info)
    assert info["baselines"].source == f"iclbench {iclbench.__version__}"
    assert info["baselines"].hooks == ["register_learners"]
    assert info["suites"].hooks == ["register_suites"]
    assert info["linear-regression"].hooks == ["register_tasks"]


def test_misspelt_hook_is_rejected():
    class Typo:
        @iclbench.hookimpl
        def register_learner(self, register):  # missing "s"
            pass

    pm = make_plugin_manager(entry_points=False)
    with pytest.raises(pluggy.PluginValidationError, match="register_learner"):
        pm.add(Typo(), "typo", "test")


def test_hook_with_unknown_argument_is_rejected():
    class WrongArgs:
        @iclbench.hookimpl
        def register_learners(self, register, extra):
            pass

    with pytest.raises(pluggy.PluginValidationError, match="extra"):
        make_plugin_manager(entry_points=False).add(WrongArgs(), "wrong", "test")


def fake_entry_points(*eps):
    return lambda group: [e for e in eps if e.group == group]


def test_broken_entry_point_is_warned_about_and_skipped(monkeypatch):
    good = md.EntryPoint("baselines", "iclbench_plugins.learners.baselines", "iclbench")
    broken = md.EntryPoint("broken", "iclbench_no_such_module_abc", "iclbench")
    other_group = md.EntryPoint("elsewhere", "iclbench_plugins.learners.kernels", "not-iclbench")
    monkeypatch.setattr(iclbench.plugins.md, "entry_points", fake_entry_points(good, broken, other_group))
    with pytest.warns(UserWarning, match=r"skipping plugin 'broken' \(iclbench_no_such_module_abc\): ModuleNotFoundError"):
        pm = make_plugin_manager()
    assert [p.name for p in pm.info()] == ["baselines", "local-executor"]  # the core's own plugin is always there
    assert set(build_catalog(pm).learners) == {"averaging", "knn", "zero"}


@pytest.mark.parametrize("value,expected", [
    ("baselines,gradient-descent", {"baselines", "gradient-descent"}),
    (" baselines , suites ,", {"baselines", "suites"}),
    ("", set()),
])
def test_load_plugins_env_restricts_entry_points(monkeypatch, value, expected):
    monkeypatch.setenv("ICLBENCH_LOAD_PLUGINS", value)
    pm = make_plugin_manager()
    assert {p.name for p in pm.info()} == expected | {"local-executor"}  # the env limits entry points, not the core


def test_load_plugins_env_limits_the_catalog(monkeypatch):
    monkeypatch.setenv("ICLBENCH_LOAD_PLUGINS", "baselines,gradient-descent")
    catalog = build_catalog(make_plugin_manager())
    assert set(catalog.learners) == {"averaging", "gd", "gd++", "knn", "zero"}
    assert list(catalog.tasks) == [] and list(catalog.suites) == []


PLUGIN_FILE = '''
import torch
import iclbench


class Twice(iclbench.Learner):
    name = "twice"

    class Config(iclbench.LearnerConfig):
        factor: float = 2.0

    def predict(self, episode):
        return self.config.factor * episode.query_x[:, :1]


@iclbench.hookimpl
def register_learners(register):
    register(Twice)
'''


def test_single_file_plugin(tmp_path):
    path = tmp_path / "my_twice.py"
    path.write_text(PLUGIN_FILE)
    pm = make_plugin_manager(entry_points=False, files=(path,))
    catalog = build_catalog(pm)
    assert catalog.learners.owner("twice") == "my_twice"
    assert pm.sources["my_twice"] == str(path.resolve())
    q = torch.tensor([[1.5, 7.0]])
    ep = iclbench.Episode(torch.zeros(1, 2, 2), torch.zeros(1, 2, 1), q, torch.zeros(1, 1))
    assert float(catalog.learners["twice"]({"factor": 3.0}).predict(ep)) == 4.5


def test_plugin_file_that_raises_on_import(tmp_path):
    path = tmp_path / "exploding.py"
    path.write_text("import os\n\nraise RuntimeError('boom at import')\n")
    pm = make_plugin_manager(entry_points=False)
    with pytest.raises(PluginFileError) as err:
        load_plugin_file(pm, path)
    assert str(err.value) == f"plugin file {path}: RuntimeError at line 3 on import: boom at import"
    assert isinstance(err.value, ValueError)
    assert not pm.has_plugin("exploding")
    assert "iclbench_local_plugin_exploding" not in sys.modules


def test_plugin_file_with_a_syntax_error(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("import iclbench\n\ndef register_learners(register:\n    pass\n")
    pm = make_plugin_manager(entry_points=False)
    with pytest.raises(PluginFileError) as err:
        load_plugin_file(pm, path)
    msg = str(err.value)
    assert msg.startswith(f"plugin file {path}: SyntaxError at line 3: ") and "\n" not in msg
    assert not pm.has_plugin("typo")


def test_missing_plugin_file(tmp_path):
    path = tmp_path / "missing.py"
    with pytest.raises(PluginFileError, match="plugin file not found") as err:
        make_plugin_manager(entry_points=False, files=(path,))
    assert isinstance(err.value, FileNotFoundError)  # what callers caught before PluginFileError
    assert str(path) in str(err.value)


FORGOT_HOOKIMPL = '''
import iclbench


def register_learners(register):
    raise AssertionError("never called: not a hook implementation")
'''


def test_plugin_file_without_hooks_is_warned_about(tmp_path):
    path = tmp_path / "forgot.py"
    path.write_text(FORGOT_HOOKIMPL)
    with pytest.warns(UserWarning) as record:
        pm = make_plugin_manager(entry_points=False, files=(path,))
    assert [str(w.message) for w in record] == [
        "plugin 'forgot' implements no iclbench hook; it likely lacks @iclbench.hookimpl "
        "(undecorated: register_learners)"]
    assert pm.has_plugin("forgot")
    assert list(build_catalog(pm).learners) == []


def test_entry_point_without_hooks_is_warned_about(monkeypatch, tmp_path):
    (tmp_path / "iclbench_test_hookless.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = md.EntryPoint("baselines", "iclbench_plugins.learners.baselines", "iclbench")
    hookless = md.EntryPoint("hookless", "iclbench_test_hookless", "iclbench")
    monkeypatch.setattr(iclbench.plugins.md, "entry_points", fake_entry_points(good, hookless))
    with pytest.warns(UserWarning) as record:
        pm = make_plugin_manager()
    assert [str(w.message) for w in record] == [
        "plugin 'hookless' implements no iclbench hook; it likely lacks @iclbench.hookimpl"]
    assert {p.name: p.hooks for p in pm.info()} == {"baselines": ["register_learners"], "hookless": [],
                                                    "local-executor": ["register_executors"]}


def test_trace_plugins_prints_every_registration_call(monkeypatch, capsys):
    monkeypatch.setenv("ICLBENCH_TRACE_PLUGINS", "1")
    monkeypatch.setenv("ICLBENCH_LOAD_PLUGINS", "baselines,kernels")
    build_catalog(make_plugin_manager())
    err = capsys.readouterr().err
    assert "[iclbench] register_learners -> baselines" in err
    assert "[iclbench] register_learners -> kernels" in err


def test_tryfirst_and_trylast_order_registrations_and_a_wrapper_is_refused_loudly():
    import warnings

    import iclbench
    from iclbench.catalog import build_catalog
    from iclbench.plugins import make_plugin_manager

    calls = []

    def plugin(name, **marks):
        class P:
            @iclbench.hookimpl(**marks)
            def register_learners(self, register):
                calls.append(name)
        return P()

    pm = make_plugin_manager(entry_points=False)
    for name, marks in (("late", {"trylast": True}), ("a", {}), ("early", {"tryfirst": True}), ("b", {})):
        pm.add(plugin(name, **marks), name, "test")
    build_catalog(pm)
    assert calls[:4] == ["early", "a", "b", "late"]

    class Wrapper:
        @iclbench.hookimpl(wrapper=True)
        def register_tasks(self, register):
            return (yield)

    pm = make_plugin_manager(entry_points=False)
    pm.add(Wrapper(), "wrapper", "test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_catalog(pm)
    assert any("wrapper implementation of register_tasks registers nothing" in str(w.message) for w in caught)


def test_the_local_executor_is_the_cores_and_always_there(monkeypatch):
    monkeypatch.setenv("ICLBENCH_LOAD_PLUGINS", "")
    cat = build_catalog(make_plugin_manager())
    assert list(cat.executors) == ["local"] and cat.executors.owner("local") == "local-executor"
    assert cat.executors["local"].__module__ == "iclbench.local_executor"
    assert list(build_catalog(make_plugin_manager(core=False)).executors) == []
