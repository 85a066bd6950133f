"""seq-tf: the online-GD and online-ridge constructions, causality, every configuration runs,
and a short training that reaches online GD's loss."""

from __future__ import annotations

import pytest
import torch

from iclbench.config import ConfigError
from iclbench.metrics import sensitivities
from iclbench.positions import position_curve, position_sensitivities, states_of
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.learners.online_references import OnlineGD, OnlineRidge
from iclbench_plugins.transformers.sequence import SequenceTransformerLearner, set_online_weights


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def episode():
    return LinearDynamics(D=4, T=15).sample(128, generator=gen(), device="cpu").to(dtype=torch.float64)


def constructed(attention, **kw):
    learner = SequenceTransformerLearner(attention=attention)
    learner.model = learner.build_model(4).double()
    set_online_weights(learner.model, **kw)
    return learner


def test_one_linear_layer_is_online_gd(episode):
    learner, gd = constructed("linear", eta=0.37), OnlineGD(eta=0.37)
    assert torch.allclose(learner.predict_positions(episode), gd.predict_positions(episode), atol=1e-12, rtol=0)
    sens = lambda x, ep: sensitivities(x.predict, ep)  # noqa: E731
    ours, ref = (position_sensitivities(x, episode, sens) for x in (learner, gd))  # t -> (B, D, D)
    assert list(ours) == [2, 4, 8, 11, 15]
    for t in ours:
        assert torch.allclose(ours[t], ref[t], atol=1e-12, rtol=0) and ours[t].abs().max() > 0.01


@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_one_mesa_layer_is_online_ridge(episode, lam):
    learner = constructed("mesa", lam=lam)
    assert torch.allclose(learner.predict_positions(episode), OnlineRidge(lam=lam).predict_positions(episode),
                          atol=1e-9, rtol=0)


@pytest.mark.parametrize("config", [{"attention": "linear", "layers": 2}, {"attention": "softmax", "heads": 2},
                                    {"attention": "hybrid", "layers": 2, "mlp": True, "layernorm": True},
                                    {"attention": "mesa", "tokens": "raw", "width": 16, "key_dim": 8, "heads": 2}])
def test_every_configuration_is_causal(episode, config):
    learner = SequenceTransformerLearner(config)
    torch.manual_seed(0)
    learner.model = learner.build_model(4).double()
    s = states_of(episode)  # (B, 16, 4)
    with torch.no_grad():
        base = learner.model(s[:, :-1])  # (B, 15, 4)
        changed = s[:, :-1].clone()
        changed[:, 6] += 1.0
        out = learner.model(changed)
    assert base.shape == (128, 15, 4)
    assert torch.equal(out[:, :6], base[:, :6]) and not torch.allclose(out[:, 6:], base[:, 6:])
    assert torch.equal(learner.predict(episode), base[:, -1])


def test_short_training_reaches_online_gd():
    """300 steps of one linear layer on D = 4 dynamics: the mean loss over positions within 5 %
    of online GD with its tuned rate (what the layer can represent), far below predicting 0."""
    task = LinearDynamics(D=4, T=15)
    train = {"steps": 300, "batch_size": 128, "lr": 3e-3, "eval_every": 100, "eval_tasks": 256}
    learner = SequenceTransformerLearner({"train": train})
    learner.fit(task, generator=gen(1), device="cpu")
    gd = OnlineGD()
    gd.fit(task, generator=gen(1), device="cpu")
    ep = task.sample(4096, generator=gen(9), device="cpu")
    trained, ref = (position_curve(x, ep, x.predict)["mean"] for x in (learner, gd))
    zero = float(0.5 * states_of(ep)[:, 1:].pow(2).sum(-1).mean())
    assert trained < 1.05 * ref < 0.8 * zero
    assert len(learner.fit_info()["curve"]) == 3


def test_bad_config_and_plain_tasks_are_refused():
    with pytest.raises(ConfigError, match="attention"):
        SequenceTransformerLearner(attention="rnn")
    from iclbench_plugins.tasks.linear_regression import LinearRegression
    with pytest.raises(ValueError, match="sequence tasks"):
        SequenceTransformerLearner().fit(LinearRegression(), generator=gen(), device="cpu")
