"""Error against context length: one-pass prefixes equal per-prefix predictions; the curve's law."""

from __future__ import annotations

import json

import pytest
import torch

from iclbench.prefix import prefix_curve, prefix_predictions

from helpers import fitted, sample64


def looped(learner, episode):
    return torch.stack([learner.predict(episode.prefix(k)) for k in range(1, episode.n_context + 1)], dim=1)


@pytest.mark.parametrize("name, config", [("averaging", {}), ("gd", {"eta": 2.5}), ("gd", {"eta": 40.0, "clip": 0.5}),
                                          ("gd++", {"eta": 2.5, "gamma": 0.3})])
def test_one_pass_prefixes_equal_one_prediction_per_prefix(catalog, linear, name, config):
    learner = fitted(catalog, name, linear, **config)
    ep = sample64(linear, 50)
    with torch.no_grad():
        assert torch.allclose(learner.predict_prefixes(ep), looped(learner, ep), atol=1e-12, rtol=0)


def test_learners_without_a_one_pass_form_are_asked_per_prefix(catalog, linear):
    gd2 = fitted(catalog, "gd", linear, steps=2, eta=1.0)
    ep = sample64(linear, 20)
    assert gd2.predict_prefixes(ep) is None
    with torch.no_grad():
        assert torch.allclose(prefix_predictions(gd2, ep, gd2.predict), looped(gd2, ep), atol=0, rtol=0)


def test_padded_prefixes_equal_one_prediction_per_prefix(catalog, linear, monkeypatch):
    import iclbench.prefix as prefix

    monkeypatch.setattr(prefix, "PADDED_ELEMENTS", 3000)  # several batches of padded prefixes
    ls = fitted(catalog, "least-squares", linear)
    ep = sample64(linear, 40)
    with torch.no_grad():
        assert torch.allclose(prefix_predictions(ls, ep, ls.predict), looped(ls, ep), atol=1e-9, rtol=0)


def test_the_discrete_posterior_batches_its_prefixes_by_padding_too(catalog):
    pooled = catalog.tasks["garg-linear"]({"d": 4, "N": 8, "num_tasks": 16, "noise_std": 0.5})
    dmmse = fitted(catalog, "dmmse", pooled)
    ep = sample64(pooled, 30)
    with torch.no_grad():
        assert torch.allclose(prefix_predictions(dmmse, ep, dmmse.predict), looped(dmmse, ep), atol=1e-9, rtol=0)


def test_least_squares_error_vanishes_once_the_context_determines_the_teacher(catalog):
    task = catalog.tasks["linear-regression"]({"d": 5, "N": 12, "input": "normal"})
    ls = fitted(catalog, "least-squares", task)
    curve = prefix_curve(ls, sample64(task, 400), ls.predict)
    err = curve["error"]
    assert curve["k"] == list(range(1, 13)) and len(err) == len(curve["ci95"]) == 12
    assert err[0] > 0.5 and all(e < 1e-9 for e in err[4:])  # k >= d = 5 points pin W down (k = d: square, worst conditioned)
    assert all(a > b for a, b in zip(err[:4], err[1:5]))  # falling before that
    # with x, w ~ N(0, I) the minimum-norm error at k < d is (d - k) / d of the zero predictor's
    assert err[1] == pytest.approx(3 / 5, abs=0.08)


def test_the_band_is_paired_with_the_zero_predictor_on_the_same_tasks(catalog, linear):
    """The zero predictor's own curve is 1 with no band; another learner's band is the delta
    method's sd(L_i - r Z_i) / (sqrt(B) mean Z), narrower than the unpaired sd(L_i) / mean Z here."""
    ep = sample64(linear, 300)
    zero = fitted(catalog, "zero", linear)
    curve = prefix_curve(zero, ep, zero.predict)
    assert curve["error"] == [1.0] * ep.n_context and curve["ci95"] == [0.0] * ep.n_context
    gd = fitted(catalog, "gd", linear, eta=1.0)
    curve = prefix_curve(gd, ep, gd.predict)
    with torch.no_grad():
        losses = 0.5 * (looped(gd, ep) - ep.query_y[:, None]).pow(2).sum(-1).double()  # (B, N)
    z = 0.5 * ep.query_y.pow(2).sum(-1).double()  # (B,)
    r = losses.mean(0) / z.mean()  # (N,)
    expected = 1.96 * (losses - r * z[:, None]).std(0) / (300 ** 0.5 * z.mean())
    assert curve["ci95"] == pytest.approx(expected.tolist(), rel=1e-9)
    unpaired = 1.96 * losses.std(0) / (300 ** 0.5 * z.mean())
    assert all(c < u for c, u in zip(curve["ci95"], unpaired.tolist()))


def test_an_evaluation_stores_the_curve_of_marked_columns(tmp_path):
    from iclbench.cli import main

    suite = tmp_path / "prefix.toml"
    suite.write_text('name = "prefix-demo"\n[train]\ntask = "linear-regression"\nconfig = { d = 4, N = 6 }\n'
                     '[[eval]]\nlabel = "marked"\ntask = "linear-regression"\nconfig = { d = 4, N = 6 }\n'
                     'in_distribution = true\nprefix_curve = true\n'
                     '[[eval]]\nlabel = "plain"\ntask = "linear-regression"\nconfig = { d = 4, N = 6 }\n')
    assert main(["evaluate", "--suite", str(suite), "--learners", "averaging,least-squares", "--seeds", "0",
                 "--n-tasks", "64", "--device", "cpu", "--quiet", "--out", str(tmp_path / "out")]) == 0
    recs = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    marked = {r["label"]: r["prefix_curve"] for r in recs if r["task_label"] == "marked"}
    assert set(marked) == {"averaging", "least-squares"} and all(c["k"] == [1, 2, 3, 4, 5, 6] for c in marked.values())
    assert marked["least-squares"]["error"][-1] < 1e-6 < marked["averaging"]["error"][-1]
    assert not any("prefix_curve" in r for r in recs if r["task_label"] == "plain")
    assert main(["leaderboard", str(tmp_path / "out")]) == 0
    figure = tmp_path / "out" / "leaderboard" / "prefix-demo-marked-error-vs-context.png"
    assert figure.stat().st_size > 10_000
    assert "prefix-demo-marked-error-vs-context.png" in (tmp_path / "out" / "leaderboard" / "leaderboard.md").read_text()


def test_a_classification_column_records_the_sign_accuracy_at_every_k(catalog, tmp_path):
    """Garg's metric for classification: the accuracy of the prediction's sign per k, with its CI;
    averaging's rises above chance with the context, and its figure is drawn."""
    from iclbench.prefix_plot import plot_prefix_curves

    task = catalog.tasks["garg-linear"]({"d": 5, "N": 20, "classification": True})
    avg = fitted(catalog, "averaging", task)
    ep = sample64(task, 2000)
    curve = prefix_curve(avg, ep, avg.predict, task.scores)
    assert len(curve["accuracy"]) == len(curve["accuracy_ci95"]) == 20
    with torch.no_grad():
        signs = (torch.sign(avg.predict(ep)[:, 0]) == torch.sign(ep.query_y[:, 0])).double()  # (B,) with all 20 pairs
    assert curve["accuracy"][-1] == pytest.approx(float(signs.mean()), abs=1e-12)
    assert curve["accuracy"][0] < curve["accuracy"][-1] and curve["accuracy"][-1] > 0.75
    rec = {"suite": "garg-classification", "task_label": "classification", "label": "averaging", "seed": 0,
           "status": "ok", "prefix_curve": curve}
    paths = plot_prefix_curves([rec], tmp_path)
    assert sorted(p.name for p in paths) == ["garg-classification-classification-accuracy-vs-context.png",
                                             "garg-classification-classification-error-vs-context.png"]
