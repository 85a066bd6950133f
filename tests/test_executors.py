"""Execution backends: `local` gives today's records; `ray`, on a local cluster started here,
gives the same numbers, ships `--plugin` files to its workers, and retries a unit whose worker
died mid-training from the unit's last checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from iclbench.cli import main
from iclbench.executors import ExecutorError, ExecutorOptions, OrderedMerge, Resources, select_executor
from iclbench.runner import Evaluation, LearnerSpec, Plan
from iclbench.store import ResultStore, read_records, record_key

TINY = "train.steps=30,train.batch_size=64,train.eval_tasks=64,train.eval_every=10,train.checkpoint_every=10,train.lr=0.03,train.grad_clip=1"
LEARNERS = f"zero,lsa[{TINY}],fragile-lsa[{TINY}]"
TIMING = {"seconds", "fit_seconds", "created_at", "fit_info"}  # how long it took, and whether from a checkpoint

PLUGIN = '''
import os
from pathlib import Path

import iclbench
from iclbench.checkpoints import training_checkpoint
from iclbench_plugins.transformers.lsa import TransformerLearner

DRIVER = {driver}  # the test process, which never dies
MARKER = Path({marker!r})  # written by the one worker that dies


class FragileLSA(TransformerLearner):
    """`lsa` whose worker process dies once, mid-training, after its first checkpoint."""

    name = "fragile-lsa"
    checkpoint = None

    def fit(self, task, *, generator, device):
        self.checkpoint = training_checkpoint(self, task, generator)
        super().fit(task, generator=generator, device=device)

    def monitors(self):
        return {{**super().monitors(), "alive": self.die_once}}

    def die_once(self, model, episode):
        if os.getpid() == DRIVER or self.checkpoint is None or not self.checkpoint.path.exists():
            return 1.0
        try:  # created by exactly one worker, however many get here at once
            os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return 1.0
        os._exit(1)


@iclbench.hookimpl
def register_learners(register):
    register(FragileLSA)
'''


def evaluate(out: Path, *args: str) -> int:
    return main(["evaluate", "--suite", "linear", "--seeds", "0,1", "--n-tasks", "200", "--device", "cpu",
                 "--align-to", "gd[tune_tasks=200]", "--out", str(out), "--quiet", *args])


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_local_executor_gives_todays_records(catalog, tmp_path):
    plan = Plan([LearnerSpec("zero"), LearnerSpec("gd", {"tune_tasks": 200})], catalog.suites.load("linear", catalog),
                [0, 1], n_tasks=200, align_to=LearnerSpec("gd", {"tune_tasks": 200}))
    today = Evaluation(catalog, plan, ResultStore(tmp_path / "today")).run()
    local = select_executor(catalog, "local").evaluate(catalog, [plan], ResultStore(tmp_path / "local"), None)
    assert without_timing(local.records) == without_timing(today) and local.failures == []
    assert without_timing(read_records(tmp_path / "local")) == without_timing(read_records(tmp_path / "today"))


def test_unknown_executor_exits_2_naming_it(tmp_path, capsys):
    assert evaluate(tmp_path, "--learners", "zero", "--executor", "slurmish") == 2
    err = capsys.readouterr().err
    assert "unknown executor 'slurmish'" in err and "local" in err and "ray" in err
    assert not (tmp_path / "results.jsonl").exists()


def test_ray_address_without_ray_is_a_usage_error(tmp_path, capsys):
    assert evaluate(tmp_path, "--learners", "zero", "--ray-address", "auto") == 2
    assert "--ray-address auto needs --executor ray" in capsys.readouterr().err


def test_stacked_seeds_on_ray_is_a_usage_error(tmp_path, capsys):
    from iclbench.cli import main

    assert main(["reproduce", "paper", "--executor", "ray", "--stack-seeds", "--out", str(tmp_path / "b"),
                 "--cache", str(tmp_path / "c")]) == 2
    assert "--stack-seeds needs the local executor" in capsys.readouterr().err
    assert not (tmp_path / "b" / "results.jsonl").exists()


def test_a_bad_or_silent_ray_address_is_a_usage_error(tmp_path, capsys):
    assert evaluate(tmp_path, "--learners", "zero", "--executor", "ray", "--ray-address", "headnode") == 2
    assert "--ray-address must be auto or HOST:PORT, got 'headnode'" in capsys.readouterr().err
    pytest.importorskip("ray")
    assert evaluate(tmp_path, "--learners", "zero", "--executor", "ray", "--ray-address", "127.0.0.1:1") == 2
    assert "--ray-address 127.0.0.1:1: nothing answers there" in capsys.readouterr().err


def test_missing_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert evaluate(tmp_path, "--learners", "zero", "--executor", "ray") == 2
    assert "pip install iclbench[ray]" in capsys.readouterr().err


@pytest.mark.parametrize("cpus,gpus,device,message", [
    (0, None, "cpu", "--cpus-per-unit must be a positive number, got 0"),
    (1, 1.5, "cpu", "--gpus-per-unit must be 0, a fraction of one GPU"),
    (1, 0.25, "cpu", "--gpus-per-unit 0.25 with --device cpu"),
    (1, 0, "cuda", "--device cuda needs --gpus-per-unit above 0"),
])
def test_resource_requests_are_checked(cpus, gpus, device, message):
    with pytest.raises(ExecutorError, match=message.replace("+", r"\+").replace(".", r"\.")):
        Resources(cpus, gpus).for_device(torch.device(device))


def test_resources_default_to_a_gpu_per_unit_on_cuda():
    assert Resources().for_device(torch.device("cuda")) == Resources(1.0, 1.0)
    assert Resources(2, 0.25).for_device(torch.device("cuda")) == Resources(2.0, 0.25)
    assert Resources(2.5).for_device(torch.device("cpu")) == Resources(2.5, 0.0) and Resources(2.5).threads == 2


def test_records_merge_in_the_plan_order_whichever_unit_finishes_first(tmp_path):
    store = ResultStore(tmp_path)
    merge = OrderedMerge(store)
    base = {"suite": "s", "label": "l", "task_label": "t", "seed": 0, "metrics": {}}
    assert merge.add(2, [{**base, "unit": 2}]) == [] and merge.add(1, []) == []
    assert merge.add(0, [{**base, "unit": 0, "n": 1}, {**base, "unit": 0, "n": 2}]) == [0, 1, 2]
    assert [r["unit"] for r in store.records()] == [0, 0, 2]


def test_a_lost_unit_is_stored_as_failed_records(catalog, tmp_path):
    from iclbench.units import lost_unit, plan_units

    plan = Plan([LearnerSpec("zero")], catalog.suites.load("linear", catalog), [3], n_tasks=50)
    (slot,) = plan_units(catalog, plan, ResultStore(tmp_path))
    result = lost_unit(slot, RuntimeError("the node went away"))
    assert [(r["status"], r["stage"], r["error"]) for r in result.records] == \
        [("failed", "execution", "RuntimeError: the node went away")]
    assert result.failures == ["zero on linear/linear, seed 3: execution failed: RuntimeError: the node went away"]


def test_a_measurement_two_runs_list_is_one_unit(catalog, tmp_path):
    from iclbench.units import pair_twins, plan_units

    plan = Plan([LearnerSpec("zero")], catalog.suites.load("linear", catalog), [0], n_tasks=50)
    store = ResultStore(tmp_path)
    first, second = pair_twins(plan_units(catalog, plan, store) + plan_units(catalog, plan, store))
    assert first.unit is not None and (second.unit, second.twin) == (None, 0)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sweeps(ray_cluster, tmp_path_factory):
    """The same evaluation through `local` and through `ray` (2 CPUs), with a `--plugin` learner
    whose worker dies once mid-training."""
    folder = tmp_path_factory.mktemp("sweeps")
    marker = folder / "died"
    plugin = folder / "fragile.py"
    plugin.write_text(PLUGIN.format(driver=os.getpid(), marker=str(marker)))
    plugin_args = ("--plugin", str(plugin), "--learners", LEARNERS)
    assert evaluate(folder / "local", *plugin_args) == 0
    assert not marker.exists()  # the driver never dies
    assert evaluate(folder / "ray", *plugin_args, "--executor", "ray") == 0
    return {"local": read_records(folder / "local"), "ray": read_records(folder / "ray"), "marker": marker,
            "folder": folder, "args": plugin_args}


def test_ray_gives_the_local_records(sweeps):
    local, ray = sweeps["local"], sweeps["ray"]
    order = lambda records: [(r["label"], r["task_label"], r["seed"]) for r in records]  # noqa: E731
    assert order(ray) == order(local) and len(ray) == 6
    for a, b in zip(local, ray):
        assert b["status"] == "ok" and b["metrics"] == a["metrics"] and "sens_cos" in b["metrics"]
        assert record_key(b) == record_key(a)  # the plugin learner's provenance names the same file and hash
    assert without_timing(ray) == without_timing(local)


def test_a_killed_unit_resumes_from_its_checkpoint(sweeps):
    assert sweeps["marker"].exists()  # one worker died mid-training
    fragile = {r["seed"]: r for r in sweeps["ray"] if r["learner"] == "fragile-lsa"}
    resumed = [seed for seed, r in fragile.items() if r["fit_info"]["resumed_at"] == 10]
    assert len(resumed) == 1  # retried from its checkpoint at step 10 of 30
    seed = resumed[0]
    local = next(r for r in sweeps["local"] if r["learner"] == "fragile-lsa" and r["seed"] == seed)
    assert fragile[seed]["metrics"] == local["metrics"]
    assert fragile[seed]["fit_info"]["curve"] == local["fit_info"]["curve"]


def test_units_are_merged_and_a_rerun_reuses_them(sweeps, capsys):
    out = sweeps["folder"] / "ray"
    assert list((out / ".units").glob("*.jsonl")) == []  # each unit's file is gone once merged
    assert evaluate(out, *sweeps["args"], "--executor", "ray") == 0
    assert len(read_records(out)) == 6


def test_a_reproduction_runs_its_units_on_ray(ray_cluster, catalog, tmp_path):
    from test_reproduce import tiny_reproduction

    from iclbench.reproduce import Results, run_reproduction

    Tiny = tiny_reproduction(tmp_path)
    said: list[str] = []
    ray = select_executor(catalog, "ray", ExecutorOptions())
    run_reproduction(Tiny(), catalog, [0], torch.device("cpu"), "small", tmp_path / "board", tmp_path / "cache",
                     said.append, executor=ray)
    assert said[:2] == ["[1/1] suite linear: 3 learners", "running 3 units on Ray, each with 1 CPU and 0 GPU"]
    results = Results(tmp_path / "board")
    assert len(results.records) == 3 and results.meta["execution"]["executor"] == "ray"
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # lsa's training, in the shared cache
