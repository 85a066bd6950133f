"""Config parsing (`name[key=value,...]`), labels of configured learners, and error messages."""

from __future__ import annotations

import pytest

from iclbench.config import ConfigError, format_spec, merge, parse_assignments, parse_spec, split_top_level


def test_parse_spec():
    assert parse_spec("gd[steps=2,per_step=true]") == ("gd", {"steps": 2, "per_step": True})
    assert parse_spec(" least-squares ") == ("least-squares", {})
    assert parse_spec("gd++[eta=[0.5, 0.25],steps=2]") == ("gd++", {"eta": [0.5, 0.25], "steps": 2})
    assert parse_spec('x[a=1.5,b="s",c=word]') == ("x", {"a": 1.5, "b": "s", "c": "word"})


def test_split_and_dotted_assignments():
    assert split_top_level("gd[steps=2,per_step=true], zero,gd++[eta=[1,2]]") == [
        "gd[steps=2,per_step=true]", "zero", "gd++[eta=[1,2]]"]
    assert parse_assignments("a=1,train.steps=50,train.lr=0.01") == {"a": 1, "train": {"steps": 50, "lr": 0.01}}
    assert merge({"a": 1, "t": {"x": 1, "y": 2}}, {"t": {"y": 3}, "b": 4}) == {"a": 1, "t": {"x": 1, "y": 3}, "b": 4}
    with pytest.raises(ConfigError, match="expected key=value, got 'steps'"):
        parse_assignments("steps")


def test_format_spec_inverts_parse_spec():
    overrides = {"steps": 2, "per_step": True, "eta": 0.5}
    label = format_spec("gd", overrides)
    assert label == "gd[steps=2,per_step=true,eta=0.5]"
    assert parse_spec(label) == ("gd", overrides)


def test_learner_labels_show_non_default_fields(catalog):
    gd = catalog.learners["gd"]
    assert gd().label == "gd"
    assert gd({"steps": 2}).label == "gd[steps=2]"
    assert gd({"steps": 1}).label == "gd"  # a default value is not an override
    assert gd({"steps": 2, "per_step": True}).label == "gd[steps=2,per_step=true]"
    assert gd({"tune_tasks": 2000}, steps=3).config.steps == 3


@pytest.mark.parametrize("config,needles", [
    ({"steps": 0}, ["learner 'gd'", "steps", "greater than or equal to 1", "got 0"]),
    ({"stepz": 2}, ["learner 'gd'", "stepz", "Extra inputs are not permitted", "got 2"]),
    ({"steps": "many"}, ["steps", "got 'many'"]),
    ({"steps": 2, "eta": [0.1, 0.2, 0.3]}, ["eta has 3 values but steps is 2"]),
])
def test_config_errors_name_field_and_value(catalog, config, needles):
    with pytest.raises(ConfigError) as err:
        catalog.learners["gd"](config)
    for needle in needles:
        assert needle in str(err.value)


def test_configs_are_frozen(catalog):
    gd = catalog.learners["gd"]({"steps": 2})
    with pytest.raises(Exception):
        gd.config.steps = 3
    assert gd.config.steps == 2


def test_wrong_config_class_is_a_type_error(catalog):
    ridge_config = catalog.learners["ridge"].Config(lam=0.1)
    with pytest.raises(TypeError, match="learner 'gd' expects a Config, got Config"):
        catalog.learners["gd"](ridge_config)
