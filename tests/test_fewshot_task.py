"""The `fewshot` task family: the token layout, least squares on its pairs against the analysis's
closed form, a sequence model reading its tokens, and the `fewshot` suite end to end."""

from __future__ import annotations

import pytest
import torch

from iclbench.catalog import default_catalog
from iclbench.config import ConfigError
from iclbench.positions import INTERLEAVED
from iclbench_plugins.analyses.fewshot_prompt import fewshot_predictions, least_squares_predictions
from iclbench_plugins.tasks.fewshot import FewShotRegression
from iclbench_plugins.learners.least_squares import LeastSquares
from iclbench_plugins.transformers.sequence import SequenceTransformerLearner, set_online_weights


def sample(**config):
    return FewShotRegression(**config).sample(64, generator=torch.Generator().manual_seed(0), device="cpu")


@pytest.mark.parametrize("layout, width", [("pairs", 2), ("eos", 3)])
def test_tokens_lay_out_the_pairs_then_the_query(layout, width):
    ep = sample(shots=4, layout=layout, D=5)
    assert ep.token_format == INTERLEAVED and ep.tokens.shape == (64, 4 * width + 1, 5)
    for i in range(4):
        assert torch.equal(ep.tokens[:, width * i], ep.context_x[:, i])
        assert torch.equal(ep.tokens[:, width * i + 1], ep.context_y[:, i])
        if layout == "eos":
            assert not ep.tokens[:, width * i + 2].any()
    assert torch.equal(ep.tokens[:, -1], ep.query_x)
    W = torch.linalg.lstsq(ep.context_x[:1].double(), ep.context_y[:1].double()).solution  # noiseless: y = W x
    assert (ep.query_x[:1].double() @ W - ep.query_y[:1].double()).abs().max() > 0  # 4 < D pairs: not determined


def test_least_squares_on_the_pairs_is_the_analysis_reference():
    ep = sample(shots=6, D=10).to(dtype=torch.float64)
    x = torch.cat([ep.context_x, ep.query_x[:, None]], 1)  # (B, 7, D)
    y = torch.cat([ep.context_y, ep.query_y[:, None]], 1)
    want = least_squares_predictions(x, y)[:, -1]  # the fit on the 6 pairs, applied to x_7
    assert torch.allclose(LeastSquares().predict(ep), want, atol=1e-9, rtol=0)
    full = sample(shots=10, D=10).to(dtype=torch.float64)  # D pairs determine W (labels drawn in float32)
    assert (LeastSquares().predict(full) - full.query_y).abs().max() < 1e-4


def test_a_sequence_model_predicts_the_state_after_the_query_token():
    learner = SequenceTransformerLearner()
    learner.model = learner.build_model(10).double()
    set_online_weights(learner.model, eta=0.3)
    ep = sample(shots=5, D=10, layout="eos").to(dtype=torch.float64)
    x = torch.cat([ep.context_x, ep.query_x[:, None]], 1)
    y = torch.cat([ep.context_y, ep.query_y[:, None]], 1)
    want = fewshot_predictions(learner.model, x, y, eos=torch.zeros(10, dtype=torch.float64))[:, -1]
    assert torch.allclose(learner.predict(ep), want, atol=1e-12, rtol=0) and want.abs().max() > 0.01


def test_the_suite_scores_a_trained_model_by_shots(tmp_path):
    from iclbench.runner import Evaluation, LearnerSpec, Plan
    from iclbench.store import ResultStore

    catalog = default_catalog()
    suite = catalog.suites.load("fewshot", catalog)
    labels = [e.label for e in suite.evals]
    assert labels[0] == "lds" and "pairs n=12" in labels and "eos n=1" in labels and len(labels) == 15
    tiny = {"train": {"steps": 2, "batch_size": 16, "eval_tasks": 16, "eval_every": 1, "checkpoint_every": 1}}
    plan = Plan([LearnerSpec("zero", {}), LearnerSpec("least-squares", {}), LearnerSpec("seq-tf", tiny)], suite, [0],
                n_tasks=200, align_to=LearnerSpec("least-squares", {}))
    recs = {(r["label"], r["task_label"]): r for r in Evaluation(catalog, plan, ResultStore(tmp_path)).run()}
    assert recs[("least-squares", "pairs n=12")]["metrics"]["loss"] < 1e-8  # 12 >= D pairs: exact
    assert recs[("least-squares", "pairs n=1")]["metrics"]["loss"] > 0.5
    assert recs[("zero", "eos n=6")]["metrics"]["loss"] == pytest.approx(10 / 6, rel=0.15)  # E||W x||^2 / 2 = D/6
    model = recs[("seq-tf[train.steps=2,train.batch_size=16,train.eval_tasks=16]", "eos n=12")]
    assert model["status"] == "ok" and "position_loss" not in model["metrics"] and "loss_diff" in model["metrics"]


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="layout"):
        FewShotRegression(layout="triplets")
    with pytest.raises(ConfigError, match="shots"):
        FewShotRegression(shots=0)
