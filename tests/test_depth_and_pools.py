"""Finite training pools (train.pool) and the alignment-over-training monitor of deep models."""

from __future__ import annotations

import pytest
import torch

from iclbench.training import TrainConfig, task_stream

from helpers import gen, sample64

QUICK = {"steps": 150, "batch_size": 256, "lr": 0.01, "eval_every": 50, "eval_tasks": 512, "checkpoint_every": 50}


def test_unset_pool_leaves_labels_and_keys_as_before(catalog):
    """An opt-in option adds nothing to identities while unset: existing checkpoints stay valid."""
    cfg = catalog.learners["lsa"]({"train": {"steps": 100}}).config
    assert "pool" not in cfg.train.identity()
    assert "pool" in catalog.learners["lsa"]({"train": {"pool": 4096}}).config.train.identity()
    assert catalog.learners["lsa"]({"train": {"pool": 4096}}).label == "lsa[train.pool=4096]"
    assert set(cfg.train.identity()) == {"steps", "batch_size", "lr", "beta1", "beta2", "grad_clip", "eval_tasks"}


def test_pool_batches_cycle_through_a_fixed_pool(linear):
    cfg = TrainConfig(batch_size=4, pool=12)
    batch = task_stream(linear, cfg, gen(3), "cpu", torch.float32)
    seen = torch.cat([batch(step).query_y for step in range(3)])  # (12, 1) one pass
    assert len(torch.unique(seen)) == 12
    assert torch.equal(batch(3).query_y, batch(0).query_y) and torch.equal(batch(7).query_y, batch(1).query_y)
    again = task_stream(linear, cfg, gen(3), "cpu", torch.float32)
    assert torch.equal(again(5).context_x, batch(2).context_x)  # a resumed run sees the same pool
    fresh = task_stream(linear, TrainConfig(batch_size=4), gen(3), "cpu", torch.float32)
    assert not torch.equal(fresh(0).query_y, fresh(0).query_y)


def test_pool_must_be_a_whole_number_of_batches():
    with pytest.raises(ValueError, match=r"pool \(10\) must be a multiple of batch_size \(4\)"):
        TrainConfig(batch_size=4, pool=10)


def test_small_pool_memorises_and_generalises_worse(catalog, linear):
    """Trained full-batch on 8 tasks, LSA fits them but not fresh ones: its held-out loss ends above its
    training loss and above the loss of the same training on fresh tasks."""
    def train(**extra):
        learner = catalog.learners["lsa"]({"train": QUICK | extra})
        learner.fit(linear, generator=gen(1), device="cpu")
        return learner.fit_info()["curve"][-1]

    pooled, fresh = train(pool=8, batch_size=8), train()
    assert pooled["train_loss"] < 0.5 * pooled["eval_loss"]
    assert pooled["eval_loss"] > 1.2 * fresh["eval_loss"]


@pytest.mark.parametrize("name", ["gd", "gd++"])
def test_depth_monitor_is_exact_for_the_constructions(catalog, linear, name):
    """The K-step construction, monitored against GD-K / GD++-K with its own rates: prediction
    difference 0 and sensitivity cosine 1 against its own algorithm."""
    from iclbench_plugins.transformers.lsa import depth_alignment

    rates = {"steps": 3, "eta": [1.5, 1.0, 0.5]} | ({"gamma": [0.4, 0.2, 0.1]} if name == "gd++" else {})
    model = catalog.learners[f"lsa-{name}"](rates).constructed(10, 1).double()
    refs = {"gd_k": catalog.learners["gd"]({"steps": 3}), "gdpp_k": catalog.learners["gd++"]({"steps": 3})}
    fitted = []

    def fit(ref):  # the monitor tunes nothing here: the references get the construction's rates
        fitted.append(ref.name)
        ref.etas = rates["eta"]
        ref.gammas = rates.get("gamma", [0.4, 0.2, 0.1]) if ref.curvature_correction else None

    row = depth_alignment(refs, fit)(model, sample64(linear, 300))
    assert sorted(fitted) == ["gd", "gd++"]
    tag = "gd_k" if name == "gd" else "gdpp_k"
    other = "gdpp_k" if name == "gd" else "gd_k"
    assert row[f"pred_diff_{tag}"] < 1e-9 and row[f"sens_cos_{tag}"] == pytest.approx(1.0, abs=1e-9)
    assert row[f"pred_diff_{other}"] > 1e-3  # the other algorithm is a different function


def test_deep_models_record_alignment_with_gd_k_over_training(catalog, linear):
    learner = catalog.learners["lsa"]({"layers": 2, "recurrent": True, "train": QUICK})
    learner.fit(linear, generator=gen(1), device="cpu")
    curve = learner.fit_info()["curve"]
    for column in ("pred_diff_gd_k", "sens_cos_gd_k", "pred_diff_gdpp_k", "sens_cos_gdpp_k"):
        assert all(column in row for row in curve), column
    assert curve[-1]["sens_cos_gd_k"] > curve[0]["sens_cos_gd_k"]
    assert curve[-1]["pred_diff_gd_k"] < curve[0]["pred_diff_gd_k"]
    assert "sens_cos_gdpp_step_k" not in curve[0]  # tied layers share one rate: no per-step comparator
    untied = catalog.learners["lsa"]({"layers": 2, "train": QUICK})
    untied.fit(linear, generator=gen(1), device="cpu")
    rows = untied.fit_info()["curve"]
    assert all(0.0 < row["sens_cos_gdpp_step_k"] <= 1.0 and row["pred_diff_gdpp_step_k"] > 0 for row in rows)
    one = catalog.learners["lsa"]({"train": QUICK})
    one.fit(linear, generator=gen(1), device="cpu")
    assert "sens_cos_gd_k" not in one.fit_info()["curve"][0]  # one layer: GD-1 alone


def test_held_out_tasks_are_not_pool_tasks(linear):
    """The held-out set never comes from the pool: its tasks differ from every pool task."""
    cfg = TrainConfig(batch_size=16, pool=16, eval_tasks=8)
    pool_batch = task_stream(linear, cfg, gen(1), "cpu", torch.float32)(0)
    from iclbench.training import held_out_set

    held = held_out_set(linear, cfg, gen(1), "cpu", torch.float32)
    assert not torch.isin(held.query_y.flatten(), pool_batch.query_y.flatten()).any()
