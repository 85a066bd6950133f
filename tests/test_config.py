"""Config parsing (`name[key=value,...]`), labels of configured learners, and error messages."""

from __future__ import annotations

import pytest

from iclbench.config import (ConfigError, StrictConfig, build_config, format_spec, merge, parse_assignments,
                             parse_spec, split_top_level)


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


@pytest.mark.parametrize("spec,expected", [
    ("gd", ("gd", {})),
    ("gd[steps=2,per_step=true]", ("gd", {"steps": 2, "per_step": True})),
    ("lsa[attention=[linear,softmax]]", ("lsa", {"attention": "[linear,softmax]"})),
    ("x[a=[1,2]]", ("x", {"a": [1, 2]})),
    ('x[s="]",t="a,[b"]', ("x", {"s": "]", "t": "a,[b"})),  # brackets and commas in strings are text
    ("x[w=don't]", ("x", {"w": "don't"})),  # an apostrophe inside a word opens no string
])
def test_well_formed_specs_parse(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec,detail", [
    ("gd[steps=2", "'[' at character 3 is never closed"),
    ("gd[steps=2]]", "']' at character 12 closes nothing"),
    ("gd]", "']' at character 3 closes nothing"),
    ("gd[steps=2]x", "'x' follows the closing ']'"),
    ("gd[a=1][b=2]", "'[b=2]' follows the closing ']'"),
    ("gd[eta=(1]", "']' at character 10 does not close '(' at character 8"),
])
def test_malformed_spec_names_the_unbalanced_bracket(spec, detail):
    with pytest.raises(ConfigError) as err:
        parse_spec(spec)
    assert str(err.value) == f"unbalanced bracket in {spec!r}: {detail}"


@pytest.mark.parametrize("text,detail", [
    ("gd[steps=2,zero", "'[' at character 3 is never closed"),
    ("gd,zero],ridge", "']' at character 8 closes nothing"),
])
def test_split_top_level_rejects_unbalanced_brackets(text, detail):
    with pytest.raises(ConfigError) as err:
        split_top_level(text)
    assert str(err.value) == f"unbalanced bracket in {text!r}: {detail}"


def test_unterminated_string_is_an_error():
    with pytest.raises(ConfigError, match="""^unterminated string in 'x\\[s="abc\\]': '"' at character 5 is never closed$"""):
        parse_spec('x[s="abc]')


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


class Inner(StrictConfig):
    steps: int = 1
    batch_size: int = 8


class Other(StrictConfig):
    lr: float = 0.1


class Outer(StrictConfig):
    width: int = 4
    train: Inner = Inner()
    extra: Inner | None = None
    stages: list[Inner] = []
    either: Inner | Other = Other()


@pytest.mark.parametrize("values,line", [
    ({"widht": 5}, "  widht: Extra inputs are not permitted (got 5); valid keys: width, train, extra, stages, either"),
    ({"train": {"stepz": 2}},
     "  train.stepz: Extra inputs are not permitted (got 2); valid keys: train.steps, train.batch_size"),
    ({"extra": {"lr": 0.1}},
     "  extra.lr: Extra inputs are not permitted (got 0.1); valid keys: extra.steps, extra.batch_size"),
    ({"stages": [{}, {"bs": 3}]},
     "  stages.1.bs: Extra inputs are not permitted (got 3); valid keys: stages.1.steps, stages.1.batch_size"),
    ({"either": {"eta": 1}},
     "  either.Inner.eta: Extra inputs are not permitted (got 1); valid keys: either.steps, either.batch_size\n"
     "  either.Other.eta: Extra inputs are not permitted (got 1); valid keys: either.lr"),
])
def test_unknown_key_lists_the_valid_keys(values, line):
    with pytest.raises(ConfigError) as err:
        build_config(Outer, values, owner="learner 'toy'")
    assert str(err.value) == f"invalid config for learner 'toy':\n{line}"


def test_other_errors_keep_their_format():
    with pytest.raises(ConfigError) as err:
        build_config(Outer, {"width": "wide", "train": {"steps": "x"}}, owner="task 'toy'")
    assert str(err.value) == (
        "invalid config for task 'toy':\n"
        "  width: Input should be a valid integer, unable to parse string as an integer (got 'wide')\n"
        "  train.steps: Input should be a valid integer, unable to parse string as an integer (got 'x')"
    )


def test_learner_unknown_keys_list_the_learner_fields(catalog):
    gd, lsa = catalog.learners["gd"], catalog.learners["lsa"]
    with pytest.raises(ConfigError) as err:
        gd({"stepz": 2})
    assert f"stepz: Extra inputs are not permitted (got 2); valid keys: {', '.join(gd.Config.model_fields)}" in str(err.value)
    with pytest.raises(ConfigError) as err:
        lsa({"train": {"stepz": 2}})
    train_keys = ", ".join(f"train.{k}" for k in lsa.Config.model_fields["train"].annotation.model_fields)
    assert "train.steps, train.pool, train.batch_size" in train_keys
    assert f"train.stepz: Extra inputs are not permitted (got 2); valid keys: {train_keys}" in str(err.value)


def test_none_sets_an_optional_field_to_none_and_labels_round_trip(catalog):
    from iclbench.config import parse_spec, parse_value

    assert parse_value("None") is None and parse_value(" none ") is None and parse_value("nonempty") == "nonempty"
    tree = catalog.learners["tree"](parse_spec("tree[max_depth=None]")[1])
    assert tree.config.max_depth is None and tree.label == "tree[max_depth=None]"
    assert catalog.learners["tree"](parse_spec(tree.label)[1]).config == tree.config
