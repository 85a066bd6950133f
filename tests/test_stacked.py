"""Seeds trained as one stacked model: bit for bit the weights and curves of one-by-one
training on a CPU, checkpoints that evaluation loads and `meta_train` resumes, and the refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from iclbench.catalog import default_catalog
from iclbench.checkpoints import cache_dir
from iclbench.config import parse_spec
from iclbench.runner import fit_for_evaluation
from iclbench.stacked import one_thread, stackable, train_recipes
from iclbench.training import capturing_trainings

CATALOG = default_catalog()
SEEDS = [0, 1, 2]
TINY = "train.steps=12,train.batch_size=64,train.eval_tasks=64,train.eval_every=4,train.checkpoint_every=4"


def learner(spec: str):
    name, overrides = parse_spec(spec)
    return CATALOG.learners[name](overrides)


def captured(spec: str, task, cache, device: str = "cpu") -> tuple[list, list]:
    """The learners of `spec` per seed and the trainings their fits would run."""
    learners, recipes = [], []
    with cache_dir(cache), capturing_trainings() as found:
        for seed in SEEDS:
            learners.append(learner(spec))
            fit_for_evaluation(learners[-1], task, seed, torch.device(device))
        recipes += found
    return learners, recipes


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def make_task(name: str):
    return CATALOG.tasks[name]({"T": 12}) if name == "lds" else CATALOG.tasks[name]()


def stacked_and_alone(spec: str, task, tmp_path, exact: bool = True, device: str = "cpu") -> tuple[list, list, list]:
    """Each seed's stacked training (result and recipe) and its learner trained one by one."""
    _, recipes = captured(spec, task, tmp_path / "stacked", device)
    assert len(recipes) == 3 and stackable(recipes) is None
    said = []
    results = train_recipes(recipes, progress=said.append, exact=exact)
    assert said == []  # stacked, not one by one
    alone = []
    for seed in SEEDS:
        with cache_dir(tmp_path / "alone"):
            alone.append(learner(spec))
            fit_for_evaluation(alone[-1], task, seed, torch.device(device))
    return results, recipes, alone


@pytest.fixture(autouse=True)
def _one_thread():
    """One-by-one references on one thread, as `reproduce` trains each model and as stacking runs."""
    with one_thread():
        yield


EXACT = [(f"lsa[{TINY}]", "linear-regression"),
         (f"lsa[layers=2,clip=0.5,{TINY}]", "linear-regression"),  # the clip is applied unconditionally under vmap
         (f"lsa[train.pool=128,{TINY}]", "linear-regression"),  # each seed cycles its own fixed pool
         (f"softmax-tf[heads=2,{TINY}]", "linear-regression"),
         (f"layernorm-tf[{TINY}]", "linear-regression"),
         (f"mlp-lsa[{TINY}]", "sine"),  # dx = 1: one-column products
         (f"copy-tf[{TINY}]", "alternating"),
         (f"seq-tf[layers=2,{TINY}]", "lds"),
         (f"seq-tf[attention=hybrid,layers=2,tokens=raw,mlp=true,layernorm=true,{TINY}]", "lds"),  # softmax, mesa
         (f"causal-tf[layers=1,width=16,{TINY}]", "garg-linear")]  # LayerNorm, biases, a one-output read-out


@pytest.mark.parametrize("spec, task", EXACT)
def test_stacked_seeds_train_bit_for_bit_as_one_by_one_and_evaluation_loads_them(tmp_path, spec, task):
    task = make_task(task)
    results, _, alone = stacked_and_alone(spec, task, tmp_path)
    for seed, result, one in zip(SEEDS, results, alone):
        assert [row["step"] for row in result.curve] == [4, 8, 12] == [row["step"] for row in one.training.curve]
        assert result.curve == one.training.curve  # train and held-out losses, every monitor: the same floats
        with cache_dir(tmp_path / "stacked"):  # evaluation finds the stacked checkpoint and trains nothing
            loaded = learner(spec)
            fit_for_evaluation(loaded, task, seed, torch.device("cpu"))
        assert loaded.training.from_cache and loaded.training.curve == result.curve
        assert torch.equal(weights(loaded.model), weights(one.model))


def test_a_loss_that_stacks_only_to_rounding_trains_one_by_one_unless_close(tmp_path):
    """A loss whose last bits differ under vmap (whether a kernel's do depends on the CPU and the
    library build, so the test makes the difference itself: a relative 1e-4 on a small term, inside
    a functorch transform only): exact stacking finds it on its check batch and trains one by one,
    saying by how much; close stacking trains the same models to float rounding."""
    task = CATALOG.tasks["linear-regression"]()

    def one_column(plain):
        def loss(model, episode):
            w = model.blocks[0].attn.W_Q[0, :episode.dx, :1]  # (d, 1)
            rounding = 1e-4 if torch._C._functorch.maybe_current_level() is not None else 0.0  # under vmap only
            return plain(model, episode) + 1e-3 * (1.0 + rounding) * (episode.query_x @ w).pow(2).mean()
        return loss

    _, recipes = captured(f"lsa[{TINY}]", task, tmp_path / "exact")
    loss = one_column(recipes[0].loss_fn)
    for r in recipes:
        r.loss_fn = loss
    said = []
    train_recipes(recipes, progress=said.append)
    assert len(said) == 1 and "3 seeds trained one by one (stacked gradients differ from one-by-one ones by up to " \
        in said[0] and said[0].endswith("; --stack-seeds close accepts float rounding)")
    _, close = captured(f"lsa[{TINY}]", task, tmp_path / "close")
    for r in close:
        r.loss_fn = loss
    said = []
    results = train_recipes(close, progress=said.append, exact=False)
    assert said == []
    for result, r, alone in zip(results, close, recipes):  # recipes: trained one by one above
        assert [row["step"] for row in result.curve] == [4, 8, 12]
        assert torch.allclose(weights(r.model), weights(alone.model), atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
@pytest.mark.parametrize("spec, task", [(f"lsa[layers=2,{TINY}]", "linear-regression"),
                                        (f"seq-tf[attention=hybrid,layers=2,{TINY}]", "lds")])
def test_stacked_seeds_on_cuda_train_as_one_by_one_to_rounding(tmp_path, spec, task):
    results, recipes, alone = stacked_and_alone(spec, make_task(task), tmp_path, exact=False, device="cuda")
    for result, recipe, one in zip(results, recipes, alone):
        assert weights(recipe.model).is_cuda
        for row, ref in zip(result.curve, one.training.curve, strict=True):
            assert row["eval_loss"] == pytest.approx(ref["eval_loss"], rel=1e-5)
        assert torch.allclose(weights(recipe.model), weights(one.model), atol=1e-5, rtol=0)


def test_a_loss_vmap_refuses_trains_one_by_one_and_says_why(tmp_path):
    _, recipes = captured(f"lsa[{TINY}]", CATALOG.tasks["linear-regression"](), tmp_path)
    plain = recipes[0].loss_fn

    def branching(model, episode):  # a data-dependent branch: fine eagerly, refused by vmap
        loss = plain(model, episode)
        return loss * 2 if loss.item() > 1e9 else loss

    for r in recipes:
        r.loss_fn = branching
    said = []
    results = train_recipes(recipes, progress=said.append)
    assert len(said) == 1 and "3 seeds trained one by one (its loss does not run under vmap: " in said[0]
    assert all([row["step"] for row in r.curve] == [4, 8, 12] for r in results)


def test_iclbench_asks_mkl_for_alignment_independent_products():
    """Importing iclbench sets MKL_CBWR before MKL's first call; a process that ran MKL before
    importing iclbench is reported as not strict."""
    probe = "import os, torch; {before}import iclbench; from iclbench import mkl; print(os.environ['MKL_CBWR'], mkl.strict())"
    run = lambda code, **env: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**{k: v for k, v in os.environ.items() if k != "MKL_CBWR"}, **env}).stdout.split()
    fresh = run(probe.format(before=""))
    if fresh[1] == "None":
        pytest.skip("this torch build has no MKL")
    assert fresh == ["AUTO,STRICT", "True"]
    assert run(probe.format(before="torch.ones(64, 64) @ torch.ones(64, 64); ")) == ["AUTO,STRICT", "False"]


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
    assert torch.equal(weights(resumed.model), weights(one.model))
    assert resumed.training.curve == one.training.curve


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


def test_each_stacked_seed_is_charged_its_share_of_the_wall_time(tmp_path):
    """Three seeds trained in one stacked wall time add up to it, each a third, in the result and
    in the checkpoint evaluation loads (the published time per learner sums over seeds)."""
    import time

    task = make_task("linear-regression")
    _, recipes = captured(f"lsa[{TINY}]", task, tmp_path)
    start = time.perf_counter()
    results = train_recipes(recipes, progress=lambda m: None, exact=True)
    wall = time.perf_counter() - start
    assert sum(r.seconds for r in results) <= wall
    assert all(r.seconds == pytest.approx(results[0].seconds) and r.seconds > 0 for r in results)
    for seed, recipe in zip(SEEDS, recipes):
        assert recipe.checkpoint.load()["seconds"] == pytest.approx(results[0].seconds, rel=0.5)
