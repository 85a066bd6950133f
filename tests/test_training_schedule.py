"""The training loop's optimiser options for the mesa reference's protocol: AdamW where there is
weight decay, the learning-rate warm-up and cosine decay (optax's warmup_cosine_decay_schedule),
the element-wise gradient clip, and a scheduled training resumed from a checkpoint exactly."""

from __future__ import annotations

import math

import pytest
import torch

from iclbench.checkpoints import Checkpoint
from iclbench.training import TrainConfig, adam, learning_rate, meta_train

QUICK = {"steps": 120, "batch_size": 64, "eval_every": 30, "checkpoint_every": 60, "eval_tasks": 64, "lr": 0.01}


def test_the_schedule_matches_optax_warmup_cosine_decay():
    """init 0 -> peak over `warmup` steps, then peak -> end by a cosine over decay - warmup steps
    (optax counts the warm-up in decay_steps), flat at the end value beyond it."""
    cfg = TrainConfig(steps=100, warmup=10, schedule="cosine", lr_end=1e-5, schedule_steps=50)
    peak = 8e-4
    assert learning_rate(cfg, peak, 0) == 0.0 and learning_rate(cfg, peak, 5) == pytest.approx(4e-4)
    assert learning_rate(cfg, peak, 10) == pytest.approx(peak)
    assert learning_rate(cfg, peak, 30) == pytest.approx(1e-5 + (peak - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(cfg, peak, 50) == pytest.approx(1e-5) and learning_rate(cfg, peak, 90) == pytest.approx(1e-5)
    flat = TrainConfig(steps=100, warmup=4)
    assert [learning_rate(TrainConfig(), 1.0, s) for s in (0, 99)] == [1.0, 1.0]  # unset: constant
    assert [learning_rate(flat, 1.0, s) for s in (0, 2, 4, 99)] == [0.0, 0.5, 1.0, 1.0]


def test_weight_decay_selects_adamw_and_none_keeps_adam():
    model = torch.nn.Linear(3, 1)
    assert type(adam(model, 1e-3, TrainConfig())) is torch.optim.Adam
    opt = adam(model, 1e-3, TrainConfig(weight_decay=0.05))
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.05


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10 * 11 + 10, 1))


def loss(model, episode):
    x = torch.cat([torch.cat([episode.context_x, episode.context_y], -1).flatten(1), episode.query_x], -1)  # (B, 120)
    return 0.5 * (model[1](x) - episode.query_y).pow(2).sum(-1).mean()


def test_a_scheduled_training_clips_elements_and_resumes_exactly(catalog, tmp_path):
    task = catalog.tasks["linear-regression"]()
    cfg = TrainConfig(**QUICK, warmup=30, schedule="cosine", lr_end=1e-4, weight_decay=0.1, grad_clip_value=1e-3)
    seen = []

    def run(checkpoint, monitors=None):
        model = build()
        meta_train(model, loss, task, cfg, generator=torch.Generator().manual_seed(5), device="cpu", lr=cfg.lr,
                   checkpoint=checkpoint, monitors=monitors)
        return model

    def killer(model, held_out):
        seen.append(1)
        if len(seen) == 3:  # at step 90, after the step-60 checkpoint
            raise KeyboardInterrupt
        return 0.0

    ckpt = Checkpoint(tmp_path, "run")
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, {"kill": killer})
    assert ckpt.load()["step"] == 60
    resumed, straight = run(ckpt), run(None)
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)  # the rate is a function of the step: the resumed run continues it
    plain = TrainConfig(**QUICK)
    other = build()
    meta_train(other, loss, task, plain, generator=torch.Generator().manual_seed(5), device="cpu", lr=plain.lr)
    assert not torch.equal(other[1].weight, straight[1].weight)  # the schedule and clip change the training


def test_the_element_clip_bounds_every_gradient_entry_before_the_update():
    from iclbench.training import Trainee, apply_update

    model = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    cfg = TrainConfig(grad_clip=None, grad_clip_value=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.weight.grad = torch.tensor([[3.0, -2.0, 0.1, -0.2]])
    t = Trainee(model, None, opt, None, {}, None, None)
    apply_update(t, cfg, 0)
    assert model.weight.detach()[0].tolist() == pytest.approx([-0.5, 0.5, -0.1, 0.2])  # SGD of the clipped gradient
