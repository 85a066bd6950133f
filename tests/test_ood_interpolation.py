"""The interpolated model out of distribution: endpoints exact on every column, figure drawn."""

from __future__ import annotations

import pytest
import torch

from iclbench.analysis import AnalysisContext
from iclbench.checkpoints import cache_dir

SPEC = "lsa[train.steps=100,train.batch_size=256,train.lr=0.01,train.eval_every=50,train.checkpoint_every=50]"


def run(catalog, tmp_path, alpha):
    ctx = AnalysisContext(catalog, catalog.suites.load("linear-ood", catalog), 0, torch.device("cpu"), 100, tmp_path)
    with cache_dir(tmp_path):
        return catalog.analyses["interpolation-ood"](learner=SPEC, alpha=alpha).run(ctx)


def test_endpoints_are_the_trained_model_and_the_construction_on_every_column(catalog, tmp_path):
    """alpha = 0 rescales the trained products (the same function), alpha = 1 is the construction."""
    trained, construction = run(catalog, tmp_path, 0.0), run(catalog, tmp_path, 1.0)
    suite = catalog.suites.load("linear-ood", catalog)
    assert set(trained["tasks"]) == {ev.label for ev in suite.evals}
    for t in trained["tasks"].values():
        assert t["interpolated"] == pytest.approx(t["trained"], rel=1e-6)  # float32 weights rescaled
    for t in construction["tasks"].values():
        assert t["interpolated"] == pytest.approx(t["construction"], rel=1e-12)
    scale5 = trained["tasks"]["teacher-scale=5"]
    assert scale5["construction"] > 10 * trained["tasks"]["linear"]["construction"]  # the column's tasks are its own
    assert len(list(tmp_path.glob("interpolation-ood-lsa*-seed0.png"))) == 1


def test_a_deeper_model_is_refused(catalog, tmp_path):
    ctx = AnalysisContext(catalog, catalog.suites.load("linear-ood", catalog), 0, torch.device("cpu"), 10, tmp_path)
    with pytest.raises(ValueError, match="needs a one-layer learner"):
        catalog.analyses["interpolation-ood"](learner="lsa[layers=2,train.steps=1]").run(ctx)


def test_a_recurrent_model_interpolates_towards_the_gd_plus_plus_construction(catalog, tmp_path):
    """App A.3: for a recurrent model the construction is GD++-K's (its gammas in the products);
    alpha = 1 is exactly that construction, alpha = 0 the trained model rescaled."""
    spec = ("lsa[layers=2,recurrent=true,train.steps=60,train.batch_size=256,train.lr=0.01,train.eval_every=30,"
            "train.checkpoint_every=30]")
    ctx = AnalysisContext(catalog, catalog.suites.load("linear", catalog), 0, torch.device("cpu"), 200, tmp_path)
    with cache_dir(tmp_path):
        ends = [catalog.analyses["interpolation"](learner=spec, alpha=a).run(ctx) for a in (0.0, 1.0)]
    assert ends[0]["construction"] == "gd++" and len(ends[0]["gd_gamma"]) == 2 and ends[0]["gd_gamma"][0] != 0.0
    assert ends[0]["loss_interpolated"] == pytest.approx(ends[0]["loss_trained"], rel=1e-5)
    assert ends[1]["loss_interpolated"] == pytest.approx(ends[1]["loss_construction"], rel=1e-10)
