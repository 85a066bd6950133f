"""Seeds trained as one stacked model: the same weights and curves as one by one (to float
rounding), checkpoints that evaluation loads and `meta_train` resumes, and the refusals."""

from __future__ import annotations

import pytest
import torch

from iclbench.catalog import default_catalog
from iclbench.checkpoints import cache_dir
from iclbench.config import parse_spec
from iclbench.runner import fit_for_evaluation
from iclbench.stacked import stackable, train_recipes
from iclbench.training import capturing_trainings

CATALOG = default_catalog()
SEEDS = [0, 1, 2]
TINY = "train.steps=12,train.batch_size=64,train.eval_tasks=64,train.eval_every=4,train.checkpoint_every=4"


def learner(spec: str):
    name, overrides = parse_spec(spec)
    return CATALOG.learners[name](overrides)


def captured(spec: str, task, cache) -> tuple[list, list]:
    """The learners of `spec` per seed and the trainings their fits would run."""
    learners, recipes = [], []
    with cache_dir(cache), capturing_trainings() as found:
        for seed in SEEDS:
            learners.append(learner(spec))
            fit_for_evaluation(learners[-1], task, seed, torch.device("cpu"))
        recipes += found
    return learners, recipes


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("spec, task", [(f"lsa[{TINY}]", "linear-regression"), (f"seq-tf[layers=2,{TINY}]", "lds")])
def test_stacked_seeds_train_as_one_by_one_and_evaluation_loads_them(tmp_path, spec, task):
    task = CATALOG.tasks[task]() if task == "linear-regression" else CATALOG.tasks[task]({"T": 12})
    _, recipes = captured(spec, task, tmp_path / "stacked")
    assert len(recipes) == 3 and stackable(recipes) is None
    results = train_recipes(recipes)
    alone = []
    for seed in SEEDS:
        with cache_dir(tmp_path / "alone"):
            alone.append(learner(spec))
            fit_for_evaluation(alone[-1], task, seed, torch.device("cpu"))
    for seed, result, one in zip(SEEDS, results, alone):
        assert [row["step"] for row in result.curve] == [4, 8, 12] == [row["step"] for row in one.training.curve]
        for row, ref in zip(result.curve, one.training.curve):
            assert row["eval_loss"] == pytest.approx(ref["eval_loss"], rel=1e-4)
        with cache_dir(tmp_path / "stacked"):  # evaluation finds the stacked checkpoint and trains nothing
            loaded = learner(spec)
            fit_for_evaluation(loaded, task, seed, torch.device("cpu"))
        assert loaded.training.from_cache and loaded.training.curve == result.curve
        assert torch.allclose(weights(loaded.model), weights(one.model), atol=1e-5, rtol=0)
        assert torch.equal(weights(loaded.model), weights(recipes[SEEDS.index(seed)].model))  # its own slice


def test_an_interrupted_stacked_training_resumes_one_by_one(tmp_path):
    task = CATALOG.tasks["linear-regression"]()
    spec = f"lsa[{TINY}]"
    _, recipes = captured(spec, task, tmp_path)

    def stop_at_8(model, episode):
        stop_at_8.calls += 1
        if stop_at_8.calls == 2:
            raise KeyboardInterrupt
        return 0.0

    stop_at_8.calls = 0
    recipes[1].monitors["stop"] = stop_at_8  # evaluated at steps 4 and 8, after the step-4 checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_recipes(recipes)
    assert all(r.checkpoint.load()["step"] == 4 and not r.checkpoint.load()["done"] for r in recipes)
    with cache_dir(tmp_path):
        resumed = learner(spec)
        fit_for_evaluation(resumed, task, 2, torch.device("cpu"))
    assert resumed.training.resumed_at == 4 and [row["step"] for row in resumed.training.curve] == [4, 8, 12]
    with cache_dir(tmp_path / "alone"):
        one = learner(spec)
        fit_for_evaluation(one, task, 2, torch.device("cpu"))
    assert torch.allclose(weights(resumed.model), weights(one.model), atol=1e-5, rtol=0)


def test_trainings_that_differ_are_not_stacked(tmp_path):
    task = CATALOG.tasks["linear-regression"]()
    _, a = captured(f"lsa[{TINY}]", task, tmp_path)
    _, b = captured(f"lsa[layers=2,{TINY}]", task, tmp_path)
    assert stackable(a[:1] + b[:1]) == "parameter shapes differ"
    _, c = captured(f"lsa[train.lr=0.01,{TINY}]", task, tmp_path)
    assert stackable(a[:1] + c[:1]) == "training configs differ"
    train_recipes(a)
    _, again = captured(f"lsa[{TINY}]", task, tmp_path)
    assert stackable(again) == "a training has a checkpoint"
