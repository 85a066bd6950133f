"""The built-in plugins are laid out by kind, and the package index says what each registers."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import iclbench_plugins
from iclbench.catalog import build_catalog
from iclbench.plugins import make_plugin_manager

KINDS = ("learners", "transformers", "tasks", "analyses", "reproductions", "suites", "backends")


def test_the_index_is_what_the_entry_points_register():
    cat = build_catalog(make_plugin_manager())
    registries = {"learners": cat.learners, "tasks": cat.tasks, "analyses": cat.analyses, "suites": cat.suites,
                  "reproductions": cat.reproductions, "trackers": cat.trackers, "executors": cat.executors}
    modules = {ep.name: ep.value for ep in md.entry_points(group="iclbench") if ep.value.startswith("iclbench_plugins.")}
    found: dict[str, dict[str, list[str]]] = {}
    for plugin, module in modules.items():
        for kind, registry in registries.items():
            names = sorted(n for n in registry if registry.owner(n) == plugin)
            if names:
                found.setdefault(module.removeprefix("iclbench_plugins."), {})[kind] = names
    assert found == iclbench_plugins.INDEX


def test_every_module_lives_in_a_folder_of_its_kind():
    root = Path(iclbench_plugins.__file__).parent
    top = {p.name for p in root.iterdir() if not p.name.startswith((".", "__"))}
    assert top == set(KINDS)  # nothing flat beside the kinds
    for module in iclbench_plugins.INDEX:
        assert module.split(".")[0] in KINDS
        path = root.joinpath(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


def test_each_reproduction_is_one_folder():
    root = Path(iclbench_plugins.__file__).parent / "reproductions"
    for name in ("paper", "garg", "mesa"):
        folder = root / name
        assert {"__init__.py", "figures.py", "spec.toml", "README.md"} <= {p.name for p in folder.iterdir()}, name
        # its own modules by relative import, so a copied folder uses its own figures, not the original's
        for py in folder.glob("*.py"):
            assert f"iclbench_plugins.reproductions.{name}" not in py.read_text(), py


def test_a_learner_declares_that_it_trains_and_what_it_may_do_besides_predict():
    from iclbench.learner import Learner
    from iclbench.training import TrainConfig

    cat = build_catalog(make_plugin_manager())
    for name in cat.learners:
        cls = cat.learners[name]
        fields = cls.Config.model_fields
        assert cls.trains == ("train" in fields), name  # declared, never guessed from a field name
        if cls.trains:
            assert issubclass(fields["train"].annotation, TrainConfig), name
            assert cls().train_config() == cls().config.train
        else:
            assert cls().train_config() is None
    assert Learner.predict_prefixes(None, None) is None and Learner.predict_positions(None, None) is None
    assert cat.learners["least-squares"].prefix_by_padding and not cat.learners["gd"].prefix_by_padding
