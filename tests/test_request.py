"""One request object from the CLI to the API: checked once, each learner built once per purpose."""

from __future__ import annotations

import pickle

import pytest

import iclbench
from iclbench.api import run_evaluation
from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.request import EvaluationRequest, api_option, cli_option
from iclbench.runner import LearnerSpec
from iclbench.cli import main

BUILT: list[str] = []  # the label of every learner constructed, in order


class Counted(iclbench.Learner):
    """The zero predictor, counting its constructions."""

    name = "counted"

    class Config(iclbench.LearnerConfig):
        tag: int = 0

    def __init__(self, config=None, **overrides) -> None:
        super().__init__(config, **overrides)
        BUILT.append(self.label)

    def predict(self, episode):
        return episode.query_x.new_zeros(episode.batch_size, episode.dy)


class CountedPlugin:
    @iclbench.hookimpl
    def register_learners(self, register):
        register(Counted)


@pytest.fixture
def catalog():
    pm = make_plugin_manager()
    pm.add(CountedPlugin(), "counted-plugin", "tests/test_request.py")
    BUILT.clear()
    return build_catalog(pm)


def test_each_learner_is_built_once_to_plan_and_once_per_seed_to_fit(catalog, tmp_path):
    """A prototype for the label, config checks and workload; a fresh one per seed for
    fitting (the reference likewise)."""
    request = EvaluationRequest(["counted", "counted[tag=1]"], seeds=[0, 1, 2], n_tasks=20, batch_size=20,
                                align_to="counted[tag=2]", out=tmp_path, cache=None, catalog=catalog)
    records, failures, _ = run_evaluation(request)
    assert not failures and {r["status"] for r in records} == {"ok"}
    per_label = {label: BUILT.count(label) for label in set(BUILT)}
    assert per_label == {"counted": 1 + 3, "counted[tag=1]": 1 + 3, "counted[tag=2]": 1 + 3}
    BUILT.clear()  # a rerun reuses every record: only the prototypes are built
    run_evaluation(request)
    assert sorted(BUILT) == ["counted", "counted[tag=1]", "counted[tag=2]"]


def test_a_spec_ships_without_its_prototype(catalog):
    spec = LearnerSpec("counted", {"tag": 3})
    assert spec.prototype(catalog) is spec.prototype(catalog)
    shipped = pickle.loads(pickle.dumps(spec))
    assert shipped == spec and shipped._prototype is None


@pytest.mark.parametrize("field, value, api_text, cli_text", [
    ("n_tasks", 1, "n_tasks must be at least 2, got 1", "--n-tasks must be at least 2, got 1"),
    ("batch_size", 0, "batch_size must be at least 1, got 0", "--batch-size must be at least 1, got 0"),
    ("learner_timeout", -1.0, "learner_timeout must be a positive number of seconds, got -1",
     "--learner-timeout must be a positive number of seconds, got -1"),
    ("dtype", "half", "dtype must be one of float32, float64, got 'half'",
     "--dtype must be one of float32, float64, got 'half'"),
    ("track", "nope", "track: unknown tracker 'nope'", "--track: unknown tracker 'nope'"),
])
def test_one_check_names_the_field_as_each_caller_spells_it(catalog, tmp_path, field, value, api_text, cli_text):
    for option, text in ((api_option, api_text), (cli_option, cli_text)):
        BUILT.clear()
        request = EvaluationRequest("counted", out=tmp_path, catalog=catalog, option=option, **{field: value})
        with pytest.raises(iclbench.api.UsageError) as err:
            request.resolve()
        assert str(err.value).startswith(text)
        # the numbers are checked before any learner is built; the trackers after the plan
        assert BUILT == (["counted"] if field == "track" else [])


def test_the_cli_refuses_through_the_same_check(tmp_path, capsys):
    assert main(["evaluate", "--learners", "zero", "--out", str(tmp_path), "--n-tasks", "1"]) == 2
    assert "--n-tasks must be at least 2, got 1" in capsys.readouterr().err
