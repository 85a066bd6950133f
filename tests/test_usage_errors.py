"""Usage errors are usage errors: exit 2 with one line on the command line, a `UsageError`
subclass in the Python API; and the memory estimate counts the evaluation tasks of every
learner, sized from the task's config without sampling it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import iclbench
import iclbench.api as api
from iclbench.cli import main
from iclbench.config import ConfigError
from iclbench.errors import UsageError
from iclbench.plugins import PluginFileError
from iclbench.registry import DuplicateNameError, RegistrationError, UnknownNameError
from iclbench.workload import WorkloadError, sampled_shape, task_shape

# the learners the issue names: none gives an estimate of its own
UNESTIMATED = ["zero", "least-squares", "knn", "ridge", "averaging", "bayes-ridge", "dmmse", "boosting"]
REFUSAL = re.compile(r"^iclbench: error: (\S+) needs about [\d.]+ [KMGTP]?i?B of memory, more than the "
                     r"[\d.]+ [KMGTP]?i?B available \((.+)\); pass --allow-large to run it anyway$")

HALF = """
import iclbench
class Half(iclbench.Learner):
    name = 'half'
    def predict(self, episode):
        return 0.5 * episode.query_x[:, : episode.dy]
@iclbench.hookimpl
def register_learners(register):
    register(Half)
"""

NOT_A_LEARNER = """
import iclbench
@iclbench.hookimpl
def register_learners(register):
    register(42)
"""

UNSIZED_TASK = """
import torch, iclbench
class Unsized(iclbench.Task):
    name = 'unsized'
    class Config(iclbench.TaskConfig):
        N: int = 5
        d: int = 3
    def sample(self, n, *, generator, device):
        c = self.config
        assert c.d <= 1000, 'sampled a huge task'
        x = torch.rand(n, c.N + 1, c.d, generator=generator, device=device)
        y = x.sum(-1, keepdim=True)
        return iclbench.Episode(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1])
@iclbench.hookimpl
def register_tasks(register):
    register(Unsized)
"""


def evaluate(out: Path, *args: str) -> int:
    return main(["evaluate", "--out", str(out), "--quiet", "--device", "cpu", *args])


def one_line_error(capsys) -> str:
    """The command's stderr, checked to be one `iclbench: error:` line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("iclbench: error: "), err
    assert "\n" not in err, err
    return err


@pytest.fixture
def no_sampling(monkeypatch):
    """Sampling a linear-regression task fails the test: estimates must come from the config."""
    cls = type(iclbench.api.catalog().tasks["linear-regression"]())

    def boom(self, n, **kwargs):
        raise AssertionError(f"sampled {n} task(s) of {self.label}")

    monkeypatch.setattr(cls, "sample", boom)


@pytest.fixture
def small_memory(monkeypatch):
    """This machine has 1 KiB, so the default linear task's evaluation tasks cannot fit."""
    monkeypatch.setattr("iclbench.workload.available_memory", lambda device=None: 1024)


# --- every usage error is a UsageError ---------------------------------------------------------

def test_every_usage_error_subclasses_the_documented_usage_error():
    assert api.UsageError is UsageError and issubclass(UsageError, ValueError)
    for cls in (ConfigError, UnknownNameError, DuplicateNameError, PluginFileError, WorkloadError, RegistrationError):
        assert issubclass(cls, api.UsageError), cls
    assert issubclass(UnknownNameError, LookupError) and issubclass(RegistrationError, TypeError)


@pytest.mark.parametrize("kwargs,match", [
    ({"learners": "gd+"}, "did you mean 'gd\\+\\+'"),
    ({"learners": "zero", "suite": "linear-od"}, "did you mean 'linear-ood'"),
    ({"learners": "zero", "task": "linear-regression", "task_config": "N=0"}, "N: "),
    ({"learners": "gd[stepz=2]"}, "stepz"),
])
def test_the_api_raises_usage_errors_for_unknown_names_and_bad_configs(tmp_path, kwargs, match):
    with pytest.raises(api.UsageError, match=match):
        iclbench.evaluate(out=tmp_path, device="cpu", n_tasks=100, **kwargs)
    assert not (tmp_path / "results.jsonl").exists()


@pytest.mark.parametrize("seeds,shown", [([0.7, 1.9], "0.7"), ([True], "True"), (["a"], "'a'"), ("0,1", "'0,1'")])
def test_seeds_must_be_integers(tmp_path, seeds, shown):
    with pytest.raises(api.UsageError, match="seeds") as err:
        iclbench.evaluate("zero", seeds=seeds, out=tmp_path, device="cpu", n_tasks=100)
    assert shown in str(err.value)
    assert not (tmp_path / "results.jsonl").exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"n_tasks": 50.5}, "n_tasks must be an integer, got 50.5"),
    ({"n_tasks": True}, "n_tasks must be an integer, got True"),
    ({"n_tasks": 100, "batch_size": 2.5}, "batch_size must be an integer, got 2.5"),
])
def test_n_tasks_and_batch_size_must_be_integers(tmp_path, kwargs, message):
    with pytest.raises(api.UsageError, match=re.escape(message)):
        iclbench.evaluate("zero", out=tmp_path, device="cpu", **kwargs)


def test_integer_seeds_run_and_an_integral_float_is_still_refused(tmp_path):
    with pytest.raises(api.UsageError, match=r"seeds \[3\.0\]: each seed must be an integer, got 3\.0"):
        iclbench.evaluate("zero", seeds=[3.0], out=tmp_path, device="cpu", n_tasks=100)
    df = iclbench.evaluate("zero", seeds=(3,), out=tmp_path, device="cpu", n_tasks=100)
    assert list(df["seed"]) == [3]


# --- --learner-config for a learner not in the run ---------------------------------------------

@pytest.mark.parametrize("option,field", [("lsa:stepz=3", "stepz"), ("lsa:train.steps=-3", "train.steps")])
def test_learner_config_for_a_learner_not_in_the_run_is_validated(tmp_path, capsys, option, field):
    assert evaluate(tmp_path, "--n-tasks", "100", "--learners", "zero", "--learner-config", option) == 2
    err = capsys.readouterr().err
    assert err.startswith("iclbench: error: invalid config for learner 'lsa'") and f"  {field}: " in err
    assert not (tmp_path / "results.jsonl").exists()


def test_learner_config_toml_tables_for_learners_not_in_the_run_are_validated(tmp_path, capsys):
    options = tmp_path / "options.toml"
    options.write_text("[gd]\ntune_tasks = 500\n[lsa]\nstepz = 3\n")
    assert evaluate(tmp_path / "out", "--n-tasks", "100", "--learners", "zero", "--learner-config", str(options)) == 2
    assert "stepz" in capsys.readouterr().err
    options.write_text("[gd]\ntune_tasks = 500\n[lsa]\ntrain.steps = 3\n")  # valid: it applies to no learner here
    assert evaluate(tmp_path / "out", "--n-tasks", "100", "--learners", "zero", "--learner-config", str(options)) == 0


def test_the_api_validates_learner_config_of_learners_not_in_the_run(tmp_path):
    with pytest.raises(api.UsageError, match="stepz"):
        iclbench.evaluate("zero", learner_config={"lsa": {"stepz": 3}}, out=tmp_path, device="cpu", n_tasks=100)
    with pytest.raises(api.UsageError, match="unknown learner 'lsx'"):
        iclbench.evaluate("zero", learner_config={"lsx": {}}, out=tmp_path, device="cpu", n_tasks=100)
    df = iclbench.evaluate("zero", learner_config={"lsa": {"train": {"steps": 3}}}, out=tmp_path, device="cpu",
                           n_tasks=100)
    assert list(df["learner"]) == ["zero"]


# --- plugins -----------------------------------------------------------------------------------

def test_the_same_plugin_file_twice_is_loaded_once(tmp_path, capsys):
    plugin = tmp_path / "half.py"
    plugin.write_text(HALF)
    again = tmp_path / "sub" / ".." / "half.py"  # the same file, spelt differently
    (tmp_path / "sub").mkdir()
    assert main(["list", "learners", "--plugin", str(plugin), "--plugin", str(plugin), "--plugin", str(again)]) == 0
    out = capsys.readouterr()
    assert [line.split()[0] for line in out.out.splitlines()].count("half") == 1 and "module" not in out.err
    assert evaluate(tmp_path / "out", "--n-tasks", "100", "--learners", "half",
                    "--plugin", str(plugin), "--plugin", str(plugin)) == 0


def test_two_plugin_files_of_one_name_are_a_one_line_usage_error(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "half.py").write_text(HALF)
    assert main(["list", "learners", "--plugin", str(tmp_path / "a" / "half.py"),
                 "--plugin", str(tmp_path / "b" / "half.py")]) == 2
    err = one_line_error(capsys)
    assert "'half' is already loaded from" in err and str(tmp_path / "a" / "half.py") in err and "<module" not in err


def test_a_plugin_file_named_like_an_installed_plugin_is_a_usage_error(tmp_path, capsys):
    plugin = tmp_path / "baselines.py"
    plugin.write_text(HALF)
    assert main(["list", "learners", "--plugin", str(plugin)]) == 2
    assert "'baselines' is already loaded" in one_line_error(capsys)


def test_a_plugin_registering_a_non_learner_is_a_one_line_usage_error(tmp_path, capsys):
    plugin = tmp_path / "bad.py"
    plugin.write_text(NOT_A_LEARNER)
    assert main(["list", "learners", "--plugin", str(plugin)]) == 2
    err = one_line_error(capsys)
    assert "plugin 'bad' registered 42 as a learner" in err and "iclbench.Learner" in err
    assert evaluate(tmp_path / "out", "--learners", "zero", "--plugin", str(plugin)) == 2
    with pytest.raises(api.UsageError, match="plugin 'bad' registered 42"):
        api.catalog([plugin])


# --- reproduction.json -------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["{bad", "[1, 2]", '{"budget": "small"}'])
def test_a_malformed_reproduction_json_is_a_one_line_usage_error_naming_it(tmp_path, capsys, content):
    (tmp_path / "reproduction.json").write_text(content)
    assert main(["publish", str(tmp_path)]) == 2
    assert str(tmp_path / "reproduction.json") in one_line_error(capsys)


def test_reproduce_into_a_folder_with_a_malformed_reproduction_json(tmp_path, capsys):
    (tmp_path / "reproduction.json").write_text("{bad")
    assert main(["reproduce", "paper", "--budget", "small", "--seeds", "0", "--jobs", "1", "--device", "cpu",
                 "--no-cache", "--out", str(tmp_path)]) == 2
    assert "not valid JSON" in one_line_error(capsys)


# --- memory estimates count the evaluation tasks of every learner ------------------------------

@pytest.mark.parametrize("learner", UNESTIMATED)
def test_learners_without_an_estimate_are_refused_when_the_tasks_cannot_fit(tmp_path, capsys, no_sampling, learner):
    assert evaluate(tmp_path, "--learners", learner, "--task", "linear-regression",
                    "--task-config", "N=20000,d=20000") == 2
    match = REFUSAL.match(one_line_error(capsys))
    assert match and match[1] == learner and "n_tasks=10000 evaluation tasks" in match[2]
    assert not (tmp_path / "results.jsonl").exists()


@pytest.mark.parametrize("learner", ["zero", "gd"])
def test_a_huge_dimension_is_refused_without_sampling_a_task(tmp_path, capsys, no_sampling, learner):
    assert evaluate(tmp_path, "--learners", learner, "--task", "linear-regression",
                    "--task-config", "d=2000000000") == 2
    match = REFUSAL.match(one_line_error(capsys))
    assert match and match[1] == learner


def test_many_evaluation_tasks_of_zero_get_the_message_gd_gets(tmp_path, capsys, small_memory):
    assert evaluate(tmp_path, "--learners", "zero", "--n-tasks", "1000") == 2
    zero = REFUSAL.match(one_line_error(capsys))
    assert zero and zero[1] == "zero" and zero[2].startswith("n_tasks=1000 evaluation tasks x ")
    assert evaluate(tmp_path, "--learners", "gd", "--n-tasks", "1000") == 2
    gd = REFUSAL.match(one_line_error(capsys))
    assert gd and gd[1] == "gd"
    assert evaluate(tmp_path, "--learners", "zero", "--n-tasks", "1000", "--allow-large") == 0


def test_the_api_refuses_too_many_tasks_with_a_usage_error(tmp_path, small_memory):
    with pytest.raises(api.UsageError, match=r"^zero needs about .*\(n_tasks=1000 evaluation tasks"):
        iclbench.evaluate("zero", n_tasks=1000, out=tmp_path, device="cpu")


def test_a_suite_file_of_huge_tasks_is_refused(tmp_path, capsys, no_sampling):
    suite = tmp_path / "huge.toml"
    suite.write_text('name = "huge"\n[train]\ntask = "linear-regression"\nconfig = { N = 100000000 }\n'
                     '[[eval]]\nlabel = "huge"\ntask = "linear-regression"\nconfig = { N = 100000000 }\n')
    assert evaluate(tmp_path / "out", "--learners", "least-squares", "--suite", str(suite)) == 2
    match = REFUSAL.match(one_line_error(capsys))
    assert match and match[1] == "least-squares"


def test_a_plugin_task_without_a_size_estimate_is_sampled_only_when_small(tmp_path, capsys):
    plugin = tmp_path / "unsized.py"
    plugin.write_text(UNSIZED_TASK)
    common = ["--plugin", str(plugin), "--learners", "zero", "--n-tasks", "100", "--task", "unsized"]
    assert evaluate(tmp_path / "small", *common, "--task-config", "d=4") == 0
    capsys.readouterr()
    assert evaluate(tmp_path / "huge", *common, "--task-config", "d=1000000000") == 2
    err = one_line_error(capsys)
    assert "task unsized[d=1000000000] gives no size estimate" in err and "d=1000000000" in err
    assert "--allow-large" in err


def test_every_registered_tasks_config_shape_is_its_sampled_shape(catalog):
    """The config-based shapes that estimates use are exactly what sampling gives, for every
    task of every registered suite (and each task family at its defaults)."""
    tasks = [catalog.tasks[name]() for name in catalog.tasks]
    for name in catalog.suites:
        suite = catalog.suites.load(name, catalog)
        tasks += [suite.train, *(ev.task for ev in suite.evals)]
    for task in tasks:
        shape = task.episode_shape()
        assert shape is not None, task.label
        assert shape == sampled_shape(task), task.label
        assert task_shape(task).extra == shape.extra >= 0  # task_shape takes the task's own
