"""The paper's claim checks, on hand-made records: paired differences, tolerances, untrained seeds."""

from __future__ import annotations

import json

import pytest

from iclbench.reproduce import Results
from iclbench_plugins.paper import Paper


def record(spec, suite="linear", seed=0, loss=0.2, align_to=None, task=None, **metrics):
    m = {"loss": loss, "loss_ci95": 0.01, **metrics}
    return {"label": spec, "suite": suite, "task_label": task or suite, "seed": seed, "align_to": align_to,
            "metrics": m, "n_tasks": 100}


def paired(spec, ref, diff, seed=0, suite="linear", task=None, ref_loss=0.2, **metrics):
    return record(spec, suite, seed, ref_loss + diff, ref, task, loss_diff=diff, loss_diff_ci95=0.001, **metrics)


def results(tmp_path, records, analyses=()) -> Results:
    (tmp_path / "reproduction.json").write_text(json.dumps({"labels": {}}))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "analyses.jsonl").write_text("".join(json.dumps({"analysis": a[0], "result": a[1]}) + "\n" for a in analyses))
    return Results(tmp_path)


def test_paired_difference_over_seeds(tmp_path):
    r = results(tmp_path, [paired("lsa", "gd", d, seed=s) for s, d in enumerate([0.001, 0.002, 0.003])])
    p = r.paired("lsa", "gd", "linear")
    assert p.seeds == 3 and p.diff == pytest.approx(0.002) and p.reference_loss == pytest.approx(0.2)
    assert p.ci == pytest.approx(4.303 * 0.001 / 3 ** 0.5, rel=1e-3)  # Student t over the seed means
    assert p.rel == pytest.approx(0.01)
    with pytest.raises(LookupError, match="no paired loss difference of 'lsa' to 'gd\\+\\+'"):
        r.paired("lsa", "gd++", "linear")


@pytest.mark.parametrize("diff, cos, holds", [(0.002, 0.999, True), (0.006, 0.999, False), (0.002, 0.98, False)])
def test_one_layer_claim_uses_the_paired_difference_and_the_cosine(tmp_path, diff, cos, holds):
    r = results(tmp_path, [paired("lsa", "gd", diff, sens_cos=cos)])
    found = Paper.one_layer(r)
    assert found.holds is holds and f"Δ {diff:+.4f}" in found.ours and f"cosine {cos:.4f}" in found.ours


def test_ood_claim_names_every_task_outside_the_tolerance(tmp_path):
    recs = [paired("lsa[layers=2,recurrent=true]", "gd++[steps=2]", d, suite="linear-ood", task=t)
            for t, d in [("linear", 0.001), ("teacher-scale=3", 0.03), ("teacher-scale=5", 0.128)]]
    found = Paper.ood(results(tmp_path, recs), "lsa[layers=2,recurrent=true]", "gd++[steps=2]")
    assert not found.holds and "1 of 3 tasks within" in found.ours and found.ours.startswith("worst teacher-scale=5")
    assert found.why.startswith("outside the tolerance: teacher-scale=5 (+64%), teacher-scale=3 (+15%)")
    assert "flat along W_PV's y-dependent entries" in found.why


def test_repeated_claim_is_decided_on_the_mean_with_the_median_as_a_second_row(tmp_path):
    res = {"loss": {"trained": [0.2, 0.1, 0.08], "gd": [0.2, 0.1, 0.13]},  # the mean: 38 % below GD at the end
           "median_loss": {"trained": [0.2, 0.1, 0.052], "gd": [0.2, 0.1, 0.05]},
           "diverged_tasks": {"trained": 1, "gd": 2}, "tasks": 100}
    r = results(tmp_path, [], [("repeated", res)])
    mean, median = Paper.repeated(r, "loss"), Paper.repeated(r, "median_loss")
    assert not mean.holds and "worst step 3: -38.5%" in mean.ours and mean.why
    assert median.holds and "after 3 steps 0.052 vs GD 0.05" in median.ours and "1 and 2 of 100 tasks" in median.ours


def test_a_seed_that_never_trained_is_reported_not_counted_as_worse(tmp_path):
    recs = [record("zero", seed=s, loss=0.4) for s in range(3)]
    for s, loss in enumerate([0.29, 0.28, 0.39]):  # seed 2 sits at the zero-predictor plateau
        recs.append(paired("softmax-tf", "gd", loss - 0.2, seed=s, sens_cos=0.9))
    recs += [paired("softmax-tf[heads=2]", "gd", 0.018, seed=s, sens_cos=0.97) for s in range(3)]
    recs += [paired("layernorm-tf", "gd", 0.05, seed=s) for s in range(3)]
    found = Paper.softmax(results(tmp_path, recs))
    assert found.holds
    assert "trained seeds: softmax-tf 2/3, softmax-tf[heads=2] 3/3, layernorm-tf 3/3" in found.ours
    assert "1 head vs GD-1 Δ +0.0850" in found.ours  # seeds 0 and 1 only: (0.09 + 0.08) / 2
    assert "1 softmax-tf seed(s) never left the zero-predictor plateau" in found.why


def test_copy_dependence_must_rise_before_or_with_the_loss_drop(tmp_path):
    def curve(copy_at, drop_at):
        return [{"step": s, "copy_next": 4.0 if s >= copy_at else 0.1, "eval_loss": 0.2 if s >= drop_at else 0.41}
                for s in range(500, 5001, 500)]
    recs = [{**record("copy-tf", "alternating", s), "fit_info": {"curve": curve(*at)}}
            for s, at in enumerate([(1500, 2000), (1500, 1500), (3000, 2000)])]
    found = Paper.copy_first(results(tmp_path, recs))
    assert not found.holds and "seed 0: copy at step 1500, loss drop at 2000" in found.ours
    assert found.why == "the copy rose after the loss drop on seed(s) [2]"


def test_the_negative_control_must_stay_above_gd(tmp_path):
    control = "copy-tf[attention=linear]"
    assert Paper.copy_control(results(tmp_path, [paired(control, "gd", 0.2, suite="alternating")])).holds
    assert not Paper.copy_control(results(tmp_path, [paired(control, "gd", 0.002, suite="alternating")])).holds


def test_missing_experiments_are_reported_not_dropped(tmp_path):
    findings = Paper().findings(results(tmp_path, []))
    assert len(findings) == 15 and not any(f.holds for f in findings)
    assert all(f.ours.startswith("missing: ") and f.why for f in findings)


def test_sine_claim_reports_how_far_the_functions_are_apart(tmp_path):
    recs = [paired("mlp-lsa", "mlp-gd", 0.005, suite="sine", ref_loss=0.13, sens_cos=0.97, pred_diff=0.2)]
    r = results(tmp_path, recs, [("sine-functions", {"distance": {"initial": 0.4, "final": 0.02}})])
    found = Paper.sine(r)
    assert found.holds and "initial 0.4, final 0.02" in found.ours and "cosine 0.970" in found.ours


def test_conditioning_claim_compares_the_last_step_with_the_start(tmp_path):
    res = [("gd++-conditioning", {"median_condition": [10.4, 5.2, 4.0]}), ("gd++-conditioning", {"median_condition": [10.6, 5.4, 4.2]})]
    found = Paper.conditioning(results(tmp_path, [], res))
    assert found.holds and found.ours == "median condition number 10.50 -> 5.30 -> 4.10 over 2 step(s)"
    assert not Paper.conditioning(results(tmp_path, [], [("gd++-conditioning", {"median_condition": [3.0, 4.0]})])).holds
