"""Registries: unknown names suggest the closest, duplicates name both plugins, type checks."""

from __future__ import annotations

import pytest
import torch

import iclbench
from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.registry import DuplicateNameError, UnknownNameError


class Constant(iclbench.Learner):
    name = "constant"

    def predict(self, episode):
        return torch.ones_like(episode.query_y)


class PluginA:
    @iclbench.hookimpl
    def register_learners(self, register):
        register(Constant)


class PluginB:
    @iclbench.hookimpl
    def register_learners(self, register):
        register(Constant)


@pytest.mark.parametrize("kind,name,suggestion", [
    ("learners", "gd+", "gd++"),
    ("learners", "least_squares", "least-squares"),
    ("learners", "kernel-ridg", "kernel-ridge"),
    ("tasks", "linear-regresion", "linear-regression"),
])
def test_unknown_names_suggest_the_closest(catalog, kind, name, suggestion):
    with pytest.raises(UnknownNameError) as err:
        getattr(catalog, kind)[name]
    msg = str(err.value)
    assert f"did you mean {suggestion!r}?" in msg and repr(name) in msg
    assert "available:" in msg and ("zero" if kind == "learners" else "sine") in msg


def test_unknown_suite_suggests_the_closest(catalog):
    with pytest.raises(UnknownNameError, match="unknown suite 'linear-od'; did you mean 'linear-ood'"):
        catalog.suites.load("linear-od", catalog)


def test_unknown_name_without_a_close_match_lists_the_choices(catalog):
    with pytest.raises(UnknownNameError) as err:
        catalog.learners["xyzzy"]
    assert "did you mean" not in str(err.value) and "available: averaging," in str(err.value)
    assert isinstance(err.value, LookupError)


def catalog_of(**plugins) -> object:
    """A catalog built from test plugins alone, each added under its keyword name."""
    pm = make_plugin_manager(entry_points=False)
    for name, plugin in plugins.items():
        pm.add(plugin, name.replace("_", "-"), "test")
    return build_catalog(pm)


def test_duplicate_names_name_both_plugins():
    with pytest.raises(DuplicateNameError) as err:
        catalog_of(plugin_a=PluginA(), plugin_b=PluginB())
    msg = str(err.value)
    assert "learner 'constant' is registered twice" in msg
    assert "'plugin-a'" in msg and "'plugin-b'" in msg


def test_a_name_taken_by_a_builtin_is_a_duplicate_too():
    class Shadow:
        @iclbench.hookimpl
        def register_learners(self, register):
            register(type("MyGD", (iclbench.Learner,), {"name": "gd"}))

    pm = make_plugin_manager()
    pm.add(Shadow(), "shadow", "test")
    with pytest.raises(DuplicateNameError, match="'gradient-descent'.*'shadow'|'shadow'.*'gradient-descent'"):
        build_catalog(pm)


@pytest.mark.parametrize("obj,message", [
    (object, "not a subclass of iclbench.Learner"),
    (Constant(), "not a subclass of iclbench.Learner"),
    (type("NoName", (iclbench.Learner,), {}), "has no string `name`"),
    (type("BadConfig", (iclbench.Learner,), {"name": "bad", "Config": dict}), "Config does not subclass"),
])
def test_registering_a_non_learner_is_a_type_error(obj, message):
    class Bad:
        @iclbench.hookimpl
        def register_learners(self, register):
            register(obj)

    with pytest.raises(TypeError) as err:
        catalog_of(bad_plugin=Bad())
    assert message in str(err.value) and "'bad-plugin'" in str(err.value)


def test_a_learner_registered_as_a_task_is_rejected():
    class Mixup:
        @iclbench.hookimpl
        def register_tasks(self, register):
            register(Constant)

    with pytest.raises(TypeError, match="as a task, but it is not a subclass of iclbench.Task"):
        catalog_of(mixup=Mixup())


def test_owner_and_iteration(catalog):
    assert catalog.learners.owner("gd++") == "gradient-descent"
    assert catalog.tasks.owner("linear-regression") == "linear-regression"
    assert catalog.suites.owner("linear-ood") == "suites"
    names = list(catalog.learners)
    assert names == sorted(names) and {"zero", "gd", "gd++", "least-squares", "ridge"} <= set(names)
    assert "gd" in catalog.learners and "gd+" not in catalog.learners
