"""Alternating tokens and copying circuits: layout, Proposition 3 + GD parity, copy dependence."""

from __future__ import annotations

import pytest
import torch

from iclbench.config import ConfigError
from iclbench.metrics import task_losses
from iclbench_plugins.tasks.alternating import positional_encoding, shift_matrix
from iclbench_plugins.transformers.copying import copy_dependence, set_copy_weights
from iclbench_plugins.transformers.nn.model import InContextTransformer


def sample(task, n=200, seed=3):
    return task.sample(n, generator=torch.Generator().manual_seed(seed), device="cpu").to(dtype=torch.float64)


def test_alternating_layout(catalog):
    ep = sample(catalog.tasks["alternating"](base_config={"N": 4, "d": 3, "dy": 2}, pos_dim=6), n=5)
    z = ep.tokens
    assert z.shape == (5, 9, 3 + 2 + 6) and ep.token_format == "alternating"
    assert torch.equal(z[:, 0:-1:2, :3], ep.context_x) and torch.equal(z[:, 1::2, 3:5], ep.context_y)
    assert (z[:, 0:-1:2, 3:5] == 0).all() and (z[:, 1::2, :3] == 0).all()
    assert torch.equal(z[:, -1, :3], ep.query_x) and (z[:, -1, 3:5] == 0).all()
    assert torch.allclose(z[0, :, 5:], positional_encoding(9, 6, dtype=torch.float64), atol=1e-7)


def test_shift_matrix_moves_encoding_one_position():
    enc = positional_encoding(12, 8, dtype=torch.float64)
    assert torch.allclose(enc[1:], enc[:-1] @ shift_matrix(8).T, atol=1e-12)


@pytest.mark.parametrize("base", [{}, {"N": 5, "d": 3}, {"N": 12, "d": 2, "dy": 2}])
def test_copy_gd_equals_gd(catalog, base):
    task = catalog.tasks["alternating"](base_config=base)
    ep = sample(task)
    gd, copy = catalog.learners["gd"](tune_tasks=1000), catalog.learners["copy-gd"](tune_tasks=1000)
    for learner in (gd, copy):
        learner.fit(task, generator=torch.Generator().manual_seed(1), device="cpu")
    with torch.no_grad():
        assert torch.allclose(copy.predict(ep), gd.predict(ep), atol=1e-10, rtol=0)


def test_copy_gd_one_step_only(catalog):
    with pytest.raises(ConfigError, match="steps"):
        catalog.learners["copy-gd"](steps=2)


def test_copy_gd_needs_alternating_tokens(catalog):
    ep = sample(catalog.tasks["linear-regression"]())
    with pytest.raises(ValueError, match="alternating"):
        catalog.learners["copy-gd"](eta=1.0).predict(ep)


def test_copy_dependence_of_the_construction(catalog):
    """The constructed copy layer depends on the next token only: next ~ 1, other ~ 0."""
    ep = sample(catalog.tasks["alternating"](), n=4)
    model = InContextTransformer(10, 1, 1, 1, "softmax", False, False, False, None, 1.0, "alternating", 20).double()
    set_copy_weights(model, 0, 21, 20)
    nxt, other = copy_dependence(model, ep)
    assert nxt == pytest.approx(1.0, abs=1e-6) and other < 1e-6


def test_short_copy_tf_training_beats_zero(catalog):
    task = catalog.tasks["alternating"](base_config={"N": 6, "d": 3}, pos_dim=8)
    learner = catalog.learners["copy-tf"](init_scale=1.0, copy_tasks=4, train={
        "steps": 800, "batch_size": 256, "lr": 0.01, "eval_every": 100, "checkpoint_every": 100, "eval_tasks": 512})
    learner.fit(task, generator=torch.Generator().manual_seed(1), device="cpu")
    ep = sample(task, 2000, seed=9).to(dtype=torch.float32)
    with torch.no_grad():
        loss = float(task_losses(learner.predict(ep), ep.query_y).mean())
    zero = float(task_losses(torch.zeros_like(ep.query_y), ep.query_y).mean())
    assert loss < 0.7 * zero
    last = learner.fit_info()["curve"][-1]
    assert last["copy_next"] > 3 * last["copy_other"]  # the copying circuit has formed
