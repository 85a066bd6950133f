"""Reproductions: the run -> publish pipeline, and the published leaderboard re-rendered from its records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import iclbench
from iclbench.plugins import make_plugin_manager
from iclbench.publish import publish
from iclbench.catalog import build_catalog
from iclbench.reproduce import Finding, Reproduction, Results, run_reproduction
from iclbench.site import write_site

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "leaderboard"
TABLES = ["leaderboard.md", "leaderboard.csv", "leaderboard.json", "README.md"]

SPEC = """
name = "tiny"
description = "two learners on the linear suite"
[budgets.small]
train_steps = 20
n_tasks = 300
[budgets.small.train]
"lsa[train.batch_size=64,train.eval_every=10,train.checkpoint_every=10]" = { steps = 30, grad_clip = 0.001 }
[[runs]]
suite = "linear"
align_to = "gd[tune_tasks=500]"
learners = ["zero", "gd[tune_tasks=500]", "lsa[train.batch_size=64,train.eval_every=10,train.checkpoint_every=10]"]
[curves]
baseline = "zero"
baseline_label = "zero (zero predictor)"
[curves.plots]
eval_loss = { stem = "training-curves", ylabel = "held-out loss", log = true, references = true }
sens_cos_gd1 = { stem = "alignment-over-training", ylabel = "cosine of sensitivities with one GD step", top = 1.02 }
"""


def tiny_reproduction(tmp_path: Path) -> type[Reproduction]:
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)

    class Tiny(Reproduction):
        name = "tiny"
        spec_file = spec

        def findings(self, r: Results) -> list[Finding]:
            gd, zero = r.mean("gd[tune_tasks=500]", "linear"), r.mean("zero", "linear")
            return [Finding("GD beats zero", f"{gd:.3f} vs {zero:.3f}", gd < zero)]

    return Tiny


def test_reproduce_then_publish(tmp_path):
    Tiny = tiny_reproduction(tmp_path)
    catalog = build_catalog(make_plugin_manager())
    out = tmp_path / "board"
    run_reproduction(Tiny(), catalog, [0, 1], torch.device("cpu"), "small", out, tmp_path / "cache", lambda m: None)
    publish(out, Tiny())
    results = Results(out)
    assert results.label("lsa[train.batch_size=64,train.eval_every=10,train.checkpoint_every=10]") == \
        "lsa[train.steps=30,train.batch_size=64,train.grad_clip=0.001]"  # execution-only options are not in labels
    assert len(results.values("zero", "linear")) == 2
    readme = (out / "README.md").read_text()
    assert "| 1 | GD beats zero |" in readme and "| yes |" in readme
    assert (out / "linear-training-curves.png").exists() and (out / "linear-alignment-over-training.png").exists()
    for name in ("leaderboard.md", "README.md"):  # learners shown by their spec; the budget's settings stated once
        text = (out / name).read_text()
        assert "| lsa[train.batch_size=64,train.eval_every=10,train.checkpoint_every=10] |" in text
        assert "| lsa[train.steps=30," not in text
    before = {name: (out / name).read_bytes() for name in TABLES}
    run_reproduction(Tiny(), catalog, [0, 1], torch.device("cpu"), "small", out, tmp_path / "cache", lambda m: None)
    assert len(Results(out).records) == len(results.records)  # resumed: nothing recomputed
    with pytest.raises(ValueError, match="budget"):
        run_reproduction(Tiny(), catalog, [0], torch.device("cpu"), "huge", out, None, lambda m: None)
    assert before["leaderboard.md"] == (out / "leaderboard.md").read_bytes()


def test_budget_naming_a_learner_no_run_lists_is_refused(tmp_path):
    Tiny = tiny_reproduction(tmp_path)
    Tiny.spec_file.write_text(SPEC.replace('"lsa[train.batch_size=64,train.eval_every=10,train.checkpoint_every=10]" = {',
                                           '"lsa[layers=3]" = {'))
    with pytest.raises(ValueError, match=r"budgets.small.train names 'lsa\[layers=3\]', which no run lists"):
        Tiny().spec()


def test_budget_config_sets_other_fields_and_the_spec_wins():
    from iclbench.reproduce import Budget, with_budget
    catalog = build_catalog(make_plugin_manager())
    big = Budget(train_steps=7, n_tasks=10, config={"lsa": {"layers": 3}, "lsa[layers=2]": {"layers": 4, "heads": 2}})
    assert with_budget("lsa", big, catalog) == "lsa[layers=3,train.steps=7]"
    assert with_budget("lsa[layers=2]", big, catalog) == "lsa[layers=2,heads=2,train.steps=7]"
    assert with_budget("zero", big, catalog) == "zero"


def test_budget_config_naming_a_learner_no_run_lists_is_refused(tmp_path):
    Tiny = tiny_reproduction(tmp_path)
    Tiny.spec_file.write_text(SPEC + '[budgets.small.config]\n"lsa[layers=3]" = { heads = 2 }\n')
    with pytest.raises(ValueError, match=r"budgets.small.config names 'lsa\[layers=3\]', which no run lists"):
        Tiny().spec()


def test_records_of_runs_no_longer_in_the_spec_are_not_read(tmp_path):
    """A record stays in results.jsonl after its run leaves the spec; the claims must not use it."""
    from iclbench.reproduce import write_meta
    rec = lambda label, align, suite="linear": {"label": label, "suite": suite, "task_label": suite, "seed": 0,  # noqa: E731
                                                "align_to": align, "metrics": {"loss": 0.2, "loss_diff": 0.0,
                                                                               "loss_diff_ci95": 0.0}}
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        rec("lsa", "gd"), rec("lsa", "gd++[steps=2]"), rec("lsa", "gd", "linear-ood"), rec("old-learner", "gd")]))
    (tmp_path / "analyses.jsonl").write_text("".join(json.dumps({"analysis": "weights", "seed": 0, "config": c,
                                                                  "result": {}}) + "\n" for c in ({"learner": "lsa"}, {"learner": "x"})))
    write_meta(tmp_path, {"labels": {}, "runs": [{"suite": "linear", "align_to": "gd", "learners": ["lsa"]}],
                          "analyses": [{"analysis": "weights", "config": {"learner": "lsa"}}]})
    r = Results(tmp_path)
    assert [(x["label"], x["suite"], x["align_to"]) for x in r.records] == [("lsa", "linear", "gd")]
    assert [a["config"] for a in r.analyses] == [{"learner": "lsa"}]
    with pytest.raises(LookupError, match="no paired loss difference of 'lsa' to 'gd\\+\\+\\[steps=2\\]'"):
        r.paired("lsa", "gd++[steps=2]", "linear")
    write_meta(tmp_path, {"labels": {}})  # a folder from before runs were recorded: everything is read
    assert len(Results(tmp_path).records) == 4


def test_resumed_reproduction_reports_every_call(tmp_path):
    from iclbench.publish import wall_line
    from iclbench.reproduce import earlier_calls, write_meta
    write_meta(tmp_path, {"reproduction": "tiny", "budget": "small", "wall_seconds": 30.0, "earlier_calls_seconds": [100.0]})
    assert earlier_calls(tmp_path, "tiny", "small") == [100.0, 30.0]
    assert earlier_calls(tmp_path, "tiny", "full") == []  # another budget starts afresh
    assert wall_line({"wall_seconds": 5.0, "earlier_calls_seconds": [100.0, 30.0]}) == \
        "135 s over 3 resumed `reproduce` calls (100 + 30 + 5 s)"


@pytest.mark.parametrize("folder", [PUBLISHED, PUBLISHED / "garg", PUBLISHED / "mesa"], ids=["paper", "garg", "mesa"])
def test_published_leaderboard_is_rendered_from_its_records(tmp_path, folder, monkeypatch):
    """Every table in a published reproduction is what `iclbench publish` makes of its stored records.
    The figures are drawn but not rasterised (the copied PNGs stay): their bytes are not compared."""
    from matplotlib.figure import Figure

    shutil.copytree(PUBLISHED, tmp_path / "leaderboard")  # whole: a sub-reproduction's site links its parent
    copy = tmp_path / "leaderboard" / folder.relative_to(PUBLISHED)
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: None)
    catalog = build_catalog(make_plugin_manager())
    repro = catalog.reproductions[Results(copy).meta["reproduction"]]()
    publish(copy, repro)
    for name in TABLES:
        assert (copy / name).read_text() == (folder / name).read_text(), f"{folder}/{name} differs from its records"
    pages = sorted(p.name for p in (folder / "site").glob("*.html"))
    assert "index.html" in pages, f"{folder} has no HTML site (iclbench publish --html)"
    write_site(copy, repro)
    for name in pages:
        assert (copy / "site" / name).read_text() == (folder / "site" / name).read_text(), \
            f"{folder}/site/{name} differs from its records"


def test_paper_reproduction_is_registered():
    catalog = build_catalog(make_plugin_manager())
    spec = catalog.reproductions["paper"]().spec()
    assert set(spec.budgets) == {"full", "small"} and spec.budgets["full"].train_steps == 5000
    for run in spec.runs:
        catalog.suites.load(run.suite, catalog)
        for learner in run.learners:
            catalog.learners[iclbench.config.parse_spec(learner)[0]]


def test_trainings_run_ahead_in_worker_processes_and_evaluation_loads_them(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ICLBENCH_PROGRESS_SECONDS", "0")  # every held-out row a line (the workers inherit it)
    Tiny = tiny_reproduction(tmp_path)
    catalog = build_catalog(make_plugin_manager())
    said = []
    run_reproduction(Tiny(), catalog, [0, 1], torch.device("cpu"), "small", tmp_path / "board", tmp_path / "cache",
                     said.append, jobs=2)
    assert said[0] == "training 2 learner/seed pairs in 2 processes"  # lsa for seeds 0 and 1; zero and gd do not train
    lsa = [r for r in Results(tmp_path / "board").records if r["learner"] == "lsa"]
    assert len(lsa) == 2 and all(r["fit_info"]["from_cache"] for r in lsa)
    assert all(r["fit_info"]["curve"][-1]["step"] == 30 for r in lsa)
    log = capfd.readouterr().err.splitlines()  # the workers' lines reach the driver's stderr
    for r in lsa:
        mine = [line for line in log if line.startswith(f"{r['label']} (linear-regression, seed {r['seed']}): ")]
        steps = [line.split("step ")[1].split("/")[0] for line in mine if ": step " in line]
        assert steps == [str(row["step"]) for row in r["fit_info"]["curve"]]  # a line per held-out row
        assert any(": trained 30 steps in " in line for line in mine)  # the worker's closing line
        assert any(": loaded from cache (30 steps" in line for line in mine)  # the evaluation's, in the driver


def test_stacked_seeds_train_once_as_one_model_and_evaluation_loads_them(tmp_path):
    from iclbench.executors import ExecutorOptions

    Tiny = tiny_reproduction(tmp_path)
    catalog = build_catalog(make_plugin_manager())
    said = []
    stacked = catalog.executors["local"](ExecutorOptions(jobs=1, stack_seeds="exact"))
    run_reproduction(Tiny(), catalog, [0, 1], torch.device("cpu"), "small", tmp_path / "board", tmp_path / "cache",
                     said.append, executor=stacked)
    assert said[0] == "training 2 learner/seed pairs as 1 stacked models in 1 processes"
    assert said[1].startswith("[1/1] trained lsa") and "seeds 0,1" in said[1] and said[1].endswith(" s (stacked)")
    lsa = {r["seed"]: r for r in Results(tmp_path / "board").records if r["learner"] == "lsa"}
    assert sorted(lsa) == [0, 1] and all(r["fit_info"]["from_cache"] for r in lsa.values())
    from iclbench.stacked import one_thread

    with one_thread():  # one by one in this process, on one thread as the stacked workers train
        run_reproduction(Tiny(), catalog, [0, 1], torch.device("cpu"), "small", tmp_path / "alone",
                         tmp_path / "cache-alone", lambda m: None, jobs=1)
    alone = {r["seed"]: r for r in Results(tmp_path / "alone").records if r["learner"] == "lsa"}
    for seed in (0, 1):
        assert lsa[seed]["metrics"]["loss"] == alone[seed]["metrics"]["loss"]  # bit for bit
    assert Results(tmp_path / "board").meta["execution"]["stack_seeds"] == "exact"
    from iclbench.publish import execution_flags, stack_flag

    assert execution_flags(Results(tmp_path / "board").meta).endswith(" --stack-seeds")  # the command as run

    assert [stack_flag(m) for m in (None, True, "exact", "close")] == ["", " --stack-seeds", " --stack-seeds",
                                                                      " --stack-seeds close"]


def test_time_per_learner_counts_each_training_once():
    from iclbench.publish import time_rows, wall_times

    trained = {"train_seconds": 30.0, "curve": [{"step": 1000}]}
    records = [
        {"label": "lsa", "seed": 0, "suite": "linear", "seconds": 1.0, "fit_info": trained},
        {"label": "lsa", "seed": 0, "suite": "linear-ood", "seconds": 2.0, "fit_info": trained},  # same training
        {"label": "lsa", "seed": 1, "suite": "linear", "seconds": 1.0, "fit_info": {**trained, "train_seconds": 50.0}},
        {"label": "gd", "seed": 0, "suite": "linear", "seconds": 0.5, "fit_seconds": 4.0, "fit_info": {}},
        {"label": "gd", "seed": 0, "suite": "linear-ood", "seconds": 0.5, "fit_seconds": 4.0,
         "fit_info": {"tuning": {"chosen": "shared"}}},  # refitted; a tuning report is no training
    ]
    times = wall_times(records)
    assert list(times) == ["lsa", "gd"]
    assert (times["lsa"].fit, times["lsa"].evaluation, times["lsa"].steps) == (80.0, 4.0, 2000)
    assert (times["gd"].fit, times["gd"].steps) == (8.0, 0)
    assert time_rows(times)[2] == "| lsa | 80.0 | 4.0 | 2000 | 40.0 |"


def test_suites_sharing_a_training_distribution_share_one_training_job(catalog):
    from iclbench.pretrain import train_jobs

    jobs = train_jobs(catalog, [("linear", ["lsa", "gd"]), ("linear-ood", ["lsa"]), ("sine", ["mlp-gd[train.steps=7]"])],
                      [0, 1])
    assert [(j.spec, j.suite, j.seed, j.steps) for j in jobs] == [
        ("lsa", "linear", 0, 5000), ("lsa", "linear", 1, 5000), ("mlp-gd[train.steps=7]", "sine", 0, 7),
        ("mlp-gd[train.steps=7]", "sine", 1, 7)]


FAILING_PLUGIN = """
import iclbench
from iclbench.training import TrainConfig
from pydantic import Field


class Boom(iclbench.Learner):
    name = "boom"

    class Config(iclbench.LearnerConfig):
        train: TrainConfig = Field(default_factory=TrainConfig)

    def fit(self, task, *, generator, device):
        raise RuntimeError("boom in fit")

    def predict(self, episode):
        raise RuntimeError("never fitted")


@iclbench.hookimpl
def register_learners(register):
    register(Boom)
"""


def test_one_failed_pretraining_does_not_stop_the_others(tmp_path):
    from iclbench.pretrain import TrainJob, pretrain

    plugin = tmp_path / "boom.py"
    plugin.write_text(FAILING_PLUGIN)
    jobs = [TrainJob("boom", "linear", 0, 9), TrainJob("lsa[train.steps=3,train.batch_size=16,train.eval_tasks=16]",
                                                      "linear", 0, 3)]
    said: list[str] = []
    pretrain(jobs, 1, torch.device("cpu"), tmp_path / "cache", (str(plugin),), said.append)
    assert said[1] == "[1/2] training boom on linear, seed 0 failed: RuntimeError: boom in fit"
    assert said[2].startswith("[2/2] trained lsa[train.steps=3,train.batch_size=16,train.eval_tasks=16] on linear")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def test_publish_prunes_stale_plots_once_everything_is_written(tmp_path):
    """A plot of an earlier publication that this one no longer makes is deleted; the curve plots
    written after the tables, and the analyses' figures/, are kept."""
    import json

    spec = tmp_path / "fake.toml"
    spec.write_text('name = "fake"\n[budgets.small]\ntrain_steps = 1\nn_tasks = 10\n[[runs]]\nsuite = "s"\nlearners = ["lsa"]\n'
                    '[curves.plots]\neval_loss = { stem = "training-curves", ylabel = "held-out loss" }\n')

    class Fake(Reproduction):
        name = "fake"
        spec_file = spec

    folder = tmp_path / "board"
    (folder / "figures").mkdir(parents=True)
    for name in ("s-old-shift.png", "figures/weights.png"):
        (folder / name).write_bytes(b"\x89PNG")
    (folder / ".iclbench-manifest.json").write_text(json.dumps({"writer": "publish", "files": ["s-old-shift.png"]}))
    curve = [{"step": 10, "eval_loss": 0.5}, {"step": 20, "eval_loss": 0.25}]
    records = [{"suite": "s", "label": "lsa", "task_label": f"r={v}", "group": "range", "value": v, "seed": 0, "n_tasks": 10,
                "in_distribution": v == 1.0, "metrics": {"loss": 0.1 * v, "loss_ci95": 0.01}, "seconds": 0.1,
                "fit_info": {"curve": curve, "train_seconds": 1.0}} for v in (1.0, 2.0)]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "reproduction.json").write_text(json.dumps({
        "reproduction": "fake", "budget": "small", "budget_values": {"train_steps": 1, "n_tasks": 10}, "seeds": [0],
        "device": "cpu", "versions": {"iclbench": "0"}, "git_commit": None, "labels": {}, "wall_seconds": 1.0}))
    written = publish(folder, Fake())
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == ["s-range.png", "s-training-curves.png"] == sorted(p.name for p in written if p.suffix == ".png")
    assert (folder / "figures" / "weights.png").exists()
    readme = (folder / "README.md").read_text()
    assert "(s-training-curves.png)" in readme and "(figures/weights.png)" in readme and "s-old-shift" not in readme
    assert "![s-range](s-range.png)" in (folder / "leaderboard.md").read_text()


def test_the_time_table_shows_each_phase_and_each_analysis():
    from iclbench.publish import analysis_time_rows, wall_line

    meta = {"wall_seconds": 166.4, "phase_seconds": {"analyses": 24.8, "evaluation": 80.4, "training": 61.2}}  # as stored
    assert wall_line(meta) == "166 s; training 61 s, evaluation 80 s, analyses 25 s"
    resumed = {**meta, "earlier_calls_seconds": [100.0]}
    assert wall_line(resumed) == ("266 s over 2 resumed `reproduce` calls (100 + 166 s); training 61 s, evaluation 80 s, "
                                  "analyses 25 s in the last call")
    assert wall_line({"wall_seconds": 12.0}) == "12 s"  # a folder written before phases were timed
    analyses = [{"analysis": "weights", "config": {"learner": "lsa"}, "seed": s, "seconds": 2.5} for s in (0, 1)]
    analyses += [{"analysis": "gd++-conditioning", "config": {}, "seed": 0, "seconds": 9.0},
                 {"analysis": "old", "config": {}, "seed": 0}]
    assert analysis_time_rows(analyses)[1:] == ["| analysis | seconds |", "|---|---|", "| gd++-conditioning | 9.0 |",
                                                "| weights of lsa | 5.0 |"]


def test_a_reproduction_logs_per_task_samples_that_publishing_keeps(tmp_path):
    Tiny = tiny_reproduction(tmp_path)
    catalog = build_catalog(make_plugin_manager())
    run_reproduction(Tiny(), catalog, [0], torch.device("cpu"), "small", tmp_path / "board", tmp_path / "cache",
                     lambda m: None, log_samples=True)
    publish(tmp_path / "board", Tiny())
    df = iclbench.records(tmp_path / "board", samples=True)
    assert len(df) and df.samples.notna().all()
    for _, row in df.iterrows():  # each record's loss is the mean of its tasks' losses
        assert row.samples["losses"].mean() == pytest.approx(row.loss, rel=1e-6)
