"""`causal-tf`: causality, one-pass prefixes, short training, curriculum and its resume, config errors."""

from __future__ import annotations

import pytest
import torch

from iclbench.checkpoints import Checkpoint
from iclbench.config import ConfigError
from iclbench.prefix import prefix_curve
from iclbench_plugins.tasks.function_classes import GargLinear
from iclbench_plugins.transformers import causal
from iclbench_plugins.transformers.causal import CausalTransformerLearner, query_loss

TINY = {"layers": 2, "width": 16, "heads": 2}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task():
    return GargLinear(d=5, N=10)


def sample(task, n=128, seed=3, dtype=torch.float64):
    return task.sample(n, generator=gen(seed), device="cpu").to(dtype=dtype)


def untrained(task, seed=0, **config):
    learner = CausalTransformerLearner({**TINY, **config})
    torch.manual_seed(seed)
    learner.model = learner.build_model(task.config.d, 1, task.config.N).double()
    return learner


def test_causality(task):
    learner = untrained(task)
    ep = sample(task)
    with torch.no_grad():
        base = learner.model(ep)  # (B, N+1, 1): [:, k] sees pairs 1..k and x_{k+1}
        base_prefixes = learner.predict_prefixes(ep)
        for j in (0, 4, 9):  # change pair j+1 (0-based j)
            cx, cy = ep.context_x.clone(), ep.context_y.clone()
            cx[:, j] += 1.0
            cy[:, j] -= 2.0
            changed = type(ep)(cx, cy, ep.query_x, ep.query_y)
            out = learner.model(changed)
            assert torch.equal(out[:, :j], base[:, :j])  # positions before x_{j+1}
            assert not torch.allclose(out[:, j + 1:], base[:, j + 1:])
            pre = learner.predict_prefixes(changed)
            assert torch.allclose(pre[:, :j], base_prefixes[:, :j], atol=1e-12, rtol=0)  # k <= j pairs
            assert not torch.allclose(pre[:, j:], base_prefixes[:, j:])


def test_prefixes_match_predict(task, monkeypatch):
    learner = untrained(task)
    ep = sample(task)
    with torch.no_grad():
        pre = learner.predict_prefixes(ep)
        monkeypatch.setattr(causal, "PREFIX_CHUNK", 50)  # 128 tasks in chunks of 50, 50 and 28
        assert torch.allclose(learner.predict_prefixes(ep), pre, atol=1e-12, rtol=0)
        assert pre.shape == (128, 10, 1)
        assert torch.allclose(pre[:, -1], learner.predict(ep), atol=1e-5, rtol=0)
        for k in range(1, 11):
            assert torch.allclose(pre[:, k - 1], learner.predict(ep.prefix(k)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="10 context"):
        learner.predict(sample(GargLinear(d=5, N=12)))


def test_short_training_learns_in_context():
    """400 steps on d = 2, N = 6: the query error falls with the context and ends well below
    the zero predictor's (measured 0.21 x zero's; least squares reaches 0 from 2 pairs)."""
    task = GargLinear(d=2, N=6)
    train = {"steps": 400, "batch_size": 128, "lr": 1e-2, "eval_every": 100, "eval_tasks": 128}
    learner = CausalTransformerLearner({**TINY, "width": 32, "curriculum": False, "train": train})
    learner.fit(task, generator=gen(1), device="cpu")
    ep = sample(task, 2000, seed=11, dtype=torch.float32)
    with torch.no_grad():
        loss = float((learner.predict(ep) - ep.query_y).pow(2).mean())
    zero = float(ep.query_y.pow(2).mean())
    assert loss < 0.4 * zero
    curve = prefix_curve(learner, ep, learner.predict)["error"]
    assert curve[-1] < 0.4 and curve[-1] < curve[1] < curve[0]
    rows = learner.fit_info()["curve"]
    assert [r["step"] for r in rows] == [100, 200, 300, 400] and rows[-1]["eval_loss"] < rows[0]["eval_loss"]
    # the curve in the evaluation's convention too: 0.5 squared error of the query from all N pairs
    assert rows[-1]["query_loss"] < rows[0]["query_loss"] and rows[-1]["query_loss"] < 0.4 * (zero / 2)
    assert query_loss(learner.model, ep) == pytest.approx(loss / 2, rel=1e-5)  # dy = 1: the mean is over tasks


CURRICULUM = {"dims_start": 2, "dims_inc": 1, "dims_interval": 10, "points_start": 3, "points_inc": 2,
              "points_interval": 10}


def test_curriculum_schedule(task):
    learner = CausalTransformerLearner({**TINY, **CURRICULUM})
    assert learner.curriculum_at(0, 5, 10) == (2, 2)  # 3 points: 2 pairs and the query
    assert learner.curriculum_at(9, 5, 10) == (2, 2)
    assert learner.curriculum_at(10, 5, 10) == (3, 4)
    assert learner.curriculum_at(29, 5, 10) == (4, 6)
    assert learner.curriculum_at(30, 5, 10) == (5, 8)  # dims full from step 30
    assert learner.curriculum_at(40, 5, 10) == (5, 10)  # points full (11) from step 40
    assert learner.curriculum_at(10 ** 6, 5, 10) == (5, 10)
    assert CausalTransformerLearner({"curriculum": False}).curriculum_at(0, 5, 10) == (5, 10)
    # the batches the training loop draws: truncated, zero-padded, the step advancing
    learner.model = learner.build_model(5, 1, 10)
    g = gen(0)
    stream = learner.training_task(task, learner.model, g)
    stream.on_step(0)  # what the training loop calls before drawing step 0's batch
    first = stream.sample(8, generator=g, device="cpu")
    assert first.n_context == 2 and first.dx == 5 and (first.context_x[..., 2:] == 0).all()
    assert (first.context_x[..., :2] != 0).all() and int(learner.model.step) == 1
    stream.on_step(40)
    assert stream.sample(8, generator=g, device="cpu").n_context == 10
    held = stream.sample(8, generator=gen(1), device="cpu")  # another stream: the full task
    assert held.n_context == 10 and (held.context_x != 0).all() and int(learner.model.step) == 41


def test_curriculum_training_resumes_exactly(task, tmp_path):
    quick = {"steps": 40, "batch_size": 32, "lr": 3e-3, "eval_every": 20, "eval_tasks": 64, "checkpoint_every": 20}
    learner = CausalTransformerLearner({**TINY, **CURRICULUM, "train": quick})  # stages change at 10, 20, 30

    def killer(model, held_out):
        if int(model.step) == 40:  # after the step-20 checkpoint
            raise KeyboardInterrupt
        return 0.0

    def run(checkpoint, monitors=None):
        learner.train(task, generator=gen(5), device="cpu", checkpoint=checkpoint, monitors=monitors)
        return learner.model

    ckpt = Checkpoint(tmp_path, "run")
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, {"kill": killer})
    assert ckpt.load()["step"] == 20 and not ckpt.load()["done"]
    assert int(ckpt.load()["model"]["step"]) == 20
    resumed = run(ckpt)
    assert learner.fit_info()["resumed_at"] == 20
    straight = run(None)
    assert int(resumed.step) == int(straight.step) == 40
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.equal(a, b)
    assert ckpt.load()["done"]


@pytest.mark.parametrize("config,field", [({"heads": 3}, "heads"), ({"layers": 0}, "layers"),
                                          ({"width": 0}, "width"), ({"dims_interval": 0}, "dims_interval"),
                                          ({"train": {"pool": 64}}, "pool"), ({"train": {"lr": -1}}, "lr")])
def test_bad_config_names_field(config, field):
    with pytest.raises(ConfigError, match=field):
        CausalTransformerLearner(config)


def test_defaults_and_workload():
    c = CausalTransformerLearner().config
    assert (c.layers, c.width, c.heads, c.curriculum, c.train.lr, c.train.batch_size) == (3, 64, 2, True, 1e-3, 64)
    from iclbench.workload import TaskShape
    big = CausalTransformerLearner(layers=12, width=256, heads=8)
    shape = TaskShape(40, 20, 1)
    params = big.model_cost(shape)[2]
    assert params == sum(p.numel() for p in big.build_model(20, 1, 40).parameters())
    assert big.workload(shape, 1000, 100, 4).seconds > CausalTransformerLearner().workload(shape, 1000, 100, 4).seconds
