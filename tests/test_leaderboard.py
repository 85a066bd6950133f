"""Leaderboard: seed aggregation with Student t, row order by in-distribution loss, file formats,
merged folders' conflicts, diverged and failed runs, provenance, paired differences and plot links."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import warnings

import pytest

from iclbench import board as leaderboard, shift_plots
from iclbench.merge import ConflictError, resolve_conflicts
from iclbench.plotting import prune_stale
from helpers import board_record


def rec(label, seed, task, loss, ci=0.01, group=None, value=None, ind=False, n_tasks=100, extra=None, **metrics):
    return {**board_record(label, task, loss, seed=seed, group=group, value=value, ind=ind, ci=ci, n_tasks=n_tasks,
                           ref="gd" if metrics else None, **metrics), **(extra or {})}


def md_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("| ")]


def csv_rows(folder) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / "leaderboard.csv").read_text())))


def strict_json(path) -> dict:
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def board(records, folder, **kw) -> str:
    leaderboard.render(records, folder, plots=False, **kw)
    return (folder / "leaderboard.md").read_text()


RECORDS = [
    rec("gd", 0, "home", 1.0, ind=True), rec("gd", 1, "home", 3.0, ind=True),
    rec("least-squares", 0, "home", 0.5, ind=True), rec("least-squares", 1, "home", 0.5, ind=True),
    rec("zero", 0, "home", 4.0, ind=True), rec("zero", 1, "home", 6.0, ind=True),
    rec("gd", 0, "wide", 9.0, group="range", value=2.0), rec("gd", 1, "wide", 11.0, group="range", value=2.0),
    rec("zero", 0, "wide", 0.1, group="range", value=2.0), rec("zero", 1, "wide", 0.3, group="range", value=2.0),
]


def test_aggregate_over_seeds_uses_student_t():
    agg = leaderboard.aggregate(leaderboard.to_frame(RECORDS)).set_index(["learner", "task"])
    gd = agg.loc[("gd", "home")]
    assert gd["mean"] == 2.0 and gd["seeds"] == 2
    assert gd["ci95"] == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2))  # sd of (1, 3) is sqrt(2)
    assert agg.loc[("least-squares", "home"), "ci95"] == 0.0
    assert agg.loc[("zero", "wide"), "mean"] == pytest.approx(0.2)


def test_one_seed_keeps_the_task_ci():
    agg = leaderboard.aggregate(leaderboard.to_frame([rec("gd", 0, "home", 1.5, ci=0.25)]))
    assert (agg["mean"].item(), agg["ci95"].item(), agg["seeds"].item(), agg["ci_over"].item()) == (1.5, 0.25, 1, "tasks")


def test_rows_are_sorted_by_in_distribution_loss():
    agg = leaderboard.aggregate(leaderboard.to_frame(RECORDS))
    # "zero" wins the shifted task but loses in distribution
    assert leaderboard.learner_order(agg) == ["least-squares", "gd", "zero"]


def test_markdown_tables():
    md = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(RECORDS)))
    assert "## Suite `s`" in md and "### in distribution" in md and "### range" in md
    assert "mean ± 95 % CI over seeds (Student t);" in md
    rows = md_rows(md)
    assert rows[:4] == [["learner", "seeds", "tasks", "home"], ["least-squares", "2", "100", "0.5 ± 0"],
                        ["gd", "2", "100", "2 ± 13"], ["zero", "2", "100", "5 ± 13"]]
    assert rows[4:7] == [["learner", "seeds", "tasks", "wide"], ["gd", "2", "100", "10 ± 13"],
                         ["zero", "2", "100", "0.2 ± 1.3"]]  # same row order


def test_alignment_tables_appear_when_measured():
    records = [rec("gd", 0, "home", 1.0, ind=True, pred_diff=0.0, pred_diff_ci95=0.0),
               rec("zero", 0, "home", 2.0, ind=True, pred_diff=0.75, pred_diff_ci95=0.01)]
    md = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(records)))
    assert "### pred_diff against `gd`" in md and "0.75 ± 0.01" in md
    assert "95 % CI over evaluation tasks" in md


def test_render_writes_every_format(tmp_path):
    paths = leaderboard.render(RECORDS, tmp_path, ("md", "csv", "json"), plots=True)
    names = sorted(p.name for p in paths)
    assert names == ["leaderboard.csv", "leaderboard.json", "leaderboard.md", "s-range.png"]
    assert (tmp_path / "leaderboard.md").read_text().startswith("# Leaderboard\n")
    gd_home = next(r for r in csv_rows(tmp_path) if r["learner"] == "gd" and r["task"] == "home")
    assert float(gd_home["mean"]) == 2.0 and float(gd_home["ci95"]) == pytest.approx(12.706)
    data = strict_json(tmp_path / "leaderboard.json")
    assert set(data) == {"rows", "provenance"}
    assert set(leaderboard.COLUMNS) == set(data["rows"][0])
    assert len(data["rows"]) == 10 // 2  # five (learner, task) cells, one metric
    assert (tmp_path / "s-range.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        leaderboard.render(RECORDS, tmp_path, ("md", "html"))
    with pytest.raises(ValueError, match="no records"):
        leaderboard.render([], tmp_path)


def test_alignment_is_reported_per_reference():
    """Alignment against different references is never averaged together."""
    from iclbench import board as leaderboard

    def rec(ref, cos):
        return {"suite": "linear", "label": "lsa", "task_label": "linear", "seed": 0, "in_distribution": True,
                "align_to": ref, "metrics": {"loss": 0.2, "loss_ci95": 0.01, "sens_cos": cos, "sens_cos_ci95": 0.0}}

    text = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame([rec("gd", 0.9), rec("gd++", 0.5)])))
    assert "sens_cos against `gd`" in text and "sens_cos against `gd++`" in text
    assert "0.9 ± 0" in text and "0.5 ± 0" in text and "0.7" not in text


def test_shift_plots_name_exact_learners_instead_of_drawing_them(tmp_path, monkeypatch):
    """A learner at float-rounding loss would stretch the log axis over ten decades."""
    figures = []
    monkeypatch.setattr(shift_plots, "save", lambda fig, path, **kw: figures.append(fig))
    records = [rec(name, 0, f"r={v}", loss, group="range", value=v)
               for name, loss in (("gd", 0.2), ("least-squares", 3e-10)) for v in (1.0, 2.0)]
    leaderboard.plot_groups(leaderboard.aggregate(leaderboard.to_frame(records)), tmp_path)
    (ax,) = figures[0].axes
    assert ax.get_legend_handles_labels()[1] == ["gd"]
    assert [t.get_text() for t in ax.texts] == ["not drawn, loss < 1e-06 throughout: least-squares"]


# --- records merged from several folders -------------------------------------------------------

def run(seed, loss, n_tasks=100, created="2026-01-01T00:00:00+00:00", status=None, **extra):
    r = rec("gd", seed, "home", loss, ind=True, n_tasks=n_tasks, extra={"created_at": created, **extra})
    if status:
        r["status"] = status
    return r


MERGED = [
    run(0, 1.0, n_tasks=100, created="2026-03-01T00:00:00+00:00"),  # newest, but fewer tasks
    run(0, 1.1, n_tasks=200, created="2026-01-01T00:00:00+00:00"),  # kept: most tasks, ok
    run(0, math.inf, n_tasks=200, created="2026-04-01T00:00:00+00:00", status="diverged", n_nonfinite=4),
    run(1, 2.0, created="2026-01-01T00:00:00+00:00"),
    run(1, 2.1, created="2026-02-01T00:00:00+00:00"),  # kept: newest
    run(2, 3.0, created="2026-01-01T00:00:00+00:00"),
    run(2, 3.0, created="2026-02-01T00:00:00+00:00"),  # the same numbers: a duplicate, no conflict
    run(3, 4.0, git_commit="aaa"), run(3, 4.5, git_commit="bbb"),  # only the record hash tells them apart
]


def test_default_conflict_rule_does_not_depend_on_input_order():
    kept, conflicts = resolve_conflicts(MERGED)
    assert [(r["seed"], r["metrics"]["loss"], r["n_tasks"]) for r in kept][:3] == [(0, 1.1, 200), (1, 2.1, 100), (2, 3.0, 100)]
    assert kept[2]["created_at"].startswith("2026-02")  # a duplicate keeps the newest copy
    assert [c.seed for c in conflicts] == [0, 1, 3]
    for shuffle_seed in range(20):
        shuffled = random.Random(shuffle_seed).sample(MERGED, len(MERGED))
        again, found = resolve_conflicts(shuffled)
        assert json.dumps(again, sort_keys=True) == json.dumps(kept, sort_keys=True)
        assert [c.describe() for c in found] == [c.describe() for c in conflicts]


def test_other_conflict_rules():
    kept, _ = resolve_conflicts(MERGED, "newest")
    assert kept[0].get("status") == "diverged" and kept[1]["metrics"]["loss"] == 2.1
    with pytest.raises(ConflictError, match="3 conflicting") as err:
        resolve_conflicts(MERGED, "error")
    assert isinstance(err.value, ValueError)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 3 and all("learner 'gd', task 'home'" in line for line in lines)
    assert "seed 0" in lines[0] and "n_tasks 200" in lines[0] and "n_tasks 100" in lines[0] and "loss inf" in lines[0]
    with pytest.raises(ValueError, match="unknown conflict rule"):
        resolve_conflicts(MERGED, "oldest")


def test_render_warns_once_listing_each_conflict(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        md = board(MERGED, tmp_path)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert text.startswith("3 conflicting measurement(s), resolved by rule 'prefer-most-tasks'")
    assert "suite 's', learner 'gd', task 'home', seed 0: kept (n_tasks 200, loss 1.1," in text
    assert "n_tasks 100, loss 1," in text and "seed 1: kept (n_tasks 100, loss 2.1," in text and "loss 2," in text
    assert "seed 2" not in text
    kept = [r["metrics"]["loss"] for r in resolve_conflicts(MERGED)[0]]
    assert kept[:3] == [1.1, 2.1, 3.0] and f"| {sum(kept) / 4:.4g} ± " in md
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        board(MERGED[5:7], tmp_path)  # identical numbers: deduplicated silently
    with pytest.raises(leaderboard.ConflictError, match="conflicting"):
        board(MERGED, tmp_path, on_conflict="error")


def full_records():
    """Every kind of record: conflicts, diverged, failed, paired differences, provenance, a shift group."""
    prov = {"learner": {"plugin": "builtins", "source": "plugins/gd.py", "sha256": "ab" * 32},
            "task": {"plugin": "builtins", "source": "plugins/linear.py", "sha256": None}}
    out = [dict(r, provenance=prov, hyperparameters={"eta": [6.0 + r["seed"]]}) for r in MERGED]
    for seed in (0, 1):
        for task, ind, group, value in (("home", True, None, None), ("wide", False, "range", 2.0),
                                        ("narrow", False, "range", 0.5)):
            out.append(rec("zero", seed, task, 4.0 + seed, ind=ind, group=group, value=value))
            out.append(rec("lsa", seed, task, math.nan if seed else 0.5, ind=ind, group=group, value=value, loss_diff=-0.1,
                           loss_diff_ci95=0.02, extra={"status": "diverged" if seed else "ok"}))
        out.append({**rec("tf", seed, "home", 0.0, ind=True), "status": "failed", "error": "boom", "stage": "fit", "metrics": {}})
    return out


def test_shuffled_input_renders_byte_identical_files(tmp_path):
    records = full_records()
    folders = []
    for i in range(3):
        shuffled = random.Random(i).sample(records, len(records)) if i else records
        folders.append(tmp_path / f"board{i}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = leaderboard.render(shuffled, folders[-1])
    names = sorted(p.name for p in written)
    assert names == ["leaderboard.csv", "leaderboard.json", "leaderboard.md", "s-range.png"]
    for name in names:
        contents = {(f / name).read_bytes() for f in folders}
        assert len(contents) == 1, name


# --- seeds and tasks behind each row -----------------------------------------------------------

def test_rows_state_their_seeds_and_tasks_and_where_the_ci_comes_from(tmp_path):
    records = [rec("gd", 0, "home", 1.0, ind=True), rec("gd", 1, "home", 3.0, ind=True, n_tasks=200),
               rec("gd", 0, "narrow", 2.0, group="range", value=0.5), rec("gd", 1, "narrow", 2.0, group="range", value=0.5),
               rec("gd", 0, "wide", 9.0, ci=0.5, group="range", value=2.0),  # one seed only
               rec("zero", 0, "home", 4.0, ci=0.25, ind=True, n_tasks=500),
               rec("zero", 0, "narrow", 5.0, group="range", value=0.5, n_tasks=500)]
    md = board(records, tmp_path)
    assert "mean ± 95 % CI over seeds (Student t) in cells with several seeds, over evaluation tasks in 1-seed cells" in md
    assert "mean ± 95 % CI over seeds (Student t);" not in md
    rows = md_rows(md)
    assert rows[:3] == [["learner", "seeds", "tasks", "home"], ["gd", "2", "100–200", "2 ± 13"],
                        ["zero", "1", "500", "4 ± 0.25"]]
    assert rows[3:6] == [["learner", "seeds", "tasks", "narrow", "wide"],  # shifted value order, not input order
                         ["gd", "1–2 (varies)", "100", "2 ± 0", "9 ± 0.5 (1 seed)"], ["zero", "1", "500", "5 ± 0.01", ""]]
    by = {(r["learner"], r["task"]): r for r in csv_rows(tmp_path)}
    assert (by["gd", "home"]["seeds"], by["gd", "home"]["tasks"], by["gd", "home"]["ci_over"]) == ("2", "100–200", "seeds")
    assert (by["gd", "wide"]["seeds"], by["gd", "wide"]["tasks"], by["gd", "wide"]["ci_over"]) == ("1", "100", "tasks")
    rows = {(r["learner"], r["task"]): r for r in strict_json(tmp_path / "leaderboard.json")["rows"]}
    assert (rows["zero", "home"]["seeds"], rows["zero", "home"]["tasks"], rows["zero", "home"]["ci_over"]) == (1, 500, "tasks")
    assert rows["gd", "home"]["tasks"] == "100–200"
    one_seed = board([rec("gd", 0, "home", 1.0, ind=True)], tmp_path)
    assert "CI over seeds" not in one_seed and "mean ± 95 % CI over evaluation tasks;" in one_seed


# --- diverged and failed runs ------------------------------------------------------------------

def test_diverged_and_failed_cells_are_named_never_blank(tmp_path):
    def bad(label, seed, loss, status, **extra):
        return {**rec(label, seed, "home", loss, ind=True), "status": status, **extra}

    records = [rec("gd", 0, "home", 1.0, ind=True), bad("gd", 1, math.inf, "diverged", n_nonfinite=3),
               bad("lsa", 0, math.nan, "diverged", n_nonfinite=100),
               {**bad("tf", 0, 0.0, "failed", error="CUDA out of memory", stage="fit"), "metrics": {}},
               rec("knn", 0, "home", 2.0, ind=True), {**bad("knn", 1, 0.0, "failed", error="x", stage="predict"), "metrics": {}},
               rec("zero", 0, "home", 4.0, ind=True), rec("zero", 1, "home", 5.0, ind=True)]
    md = board(records, tmp_path)
    rows = md_rows(md)[1:]
    assert rows == [["knn", "1", "100", "2 ± 0.01 (1 failed)"], ["zero", "2", "100", "4.5 ± 6.4"],
                    ["gd", "2", "100", "diverged (inf)"], ["lsa", "1", "100", "diverged (nan)"], ["tf", "0", "", "failed"]]
    by = {r["learner"]: r for r in csv_rows(tmp_path)}
    assert {k: by["gd"][k] for k in ("mean", "status", "nonfinite", "nonfinite_tasks")} == \
        {"mean": "", "status": "diverged", "nonfinite": "inf", "nonfinite_tasks": "3"}
    assert (by["lsa"]["status"], by["lsa"]["nonfinite"]) == ("diverged", "nan")
    assert (by["tf"]["status"], by["tf"]["mean"], by["tf"]["seeds"], by["tf"]["failed_seeds"]) == ("failed", "", "0", "1")
    assert (by["knn"]["status"], float(by["knn"]["mean"]), by["knn"]["seeds"], by["knn"]["failed_seeds"]) == ("ok", 2.0, "1", "1")
    rows = {r["learner"]: r for r in strict_json(tmp_path / "leaderboard.json")["rows"]}
    assert (rows["gd"]["mean"], rows["gd"]["ci95"], rows["gd"]["nonfinite"]) == (None, None, "inf")
    assert (rows["lsa"]["mean"], rows["lsa"]["nonfinite"]) == (None, "nan")
    assert (rows["tf"]["mean"], rows["tf"]["status"]) == (None, "failed")


def test_a_diverged_seed_makes_the_whole_cell_diverged():
    cells = leaderboard.aggregate(leaderboard.to_frame([
        rec("gd", 0, "home", 1.0), {**rec("gd", 1, "home", -math.inf), "status": "diverged"},
        {**rec("lsa", 0, "home", 0.7), "status": "diverged", "n_nonfinite": 1}])).set_index("learner")
    assert (cells.loc["gd", "status"], cells.loc["gd", "nonfinite"]) == ("diverged", "-inf")
    assert (cells.loc["lsa", "status"], cells.loc["lsa", "mean"], cells.loc["lsa", "nonfinite"]) == ("diverged", 0.7, "")


def test_failed_learners_show_in_the_alignment_tables_too():
    failed = {**rec("tf", 0, "home", 0.0, ind=True, pred_diff=0.0), "status": "failed", "metrics": {}}
    md = leaderboard.markdown(leaderboard.aggregate(leaderboard.to_frame(
        [rec("zero", 0, "home", 2.0, ind=True, pred_diff=0.75, pred_diff_ci95=0.01), failed])))
    assert [row for row in md_rows(md) if row[0] == "tf"] == [["tf", "0", "", "failed"]] * 2  # loss, pred_diff against gd


# --- provenance --------------------------------------------------------------------------------

def test_provenance_reaches_the_json_and_the_markdown_footer(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md = board([dict(r, git_commit="c0ffee", device="NVIDIA H200", device_type="cuda", dtype="float32",
                         versions={"iclbench": "0.1.0", "torch": "2.13.0"}) for r in full_records()], tmp_path)
    prov = strict_json(tmp_path / "leaderboard.json")["provenance"]
    assert (prov["commits"], prov["devices"], prov["dtypes"]) == (["c0ffee"], ["NVIDIA H200"], ["float32"])
    assert prov["versions"] == {"iclbench": ["0.1.0"], "torch": ["2.13.0"]}
    assert (prov["n_tasks"], prov["seeds"]) == ([100, 200], [0, 1, 2, 3])
    assert prov["status"] == {"diverged": 3, "failed": 2, "ok": 13}  # of the records kept
    gd = prov["learners"]["gd"]
    assert gd["hyperparameters"] == {"s": {"0": {"eta": [6.0]}, "1": {"eta": [7.0]}, "2": {"eta": [8.0]}, "3": {"eta": [9.0]}}}
    assert gd["plugin"] == {"plugin": "builtins", "source": "plugins/gd.py", "sha256": "ab" * 32}
    assert prov["learners"]["zero"] == {"plugin": None, "hyperparameters": {}}
    assert prov["tasks"] == {}  # hand-made records name no task plugin
    footer = md[md.index("## Provenance"):]
    assert "- commits: `c0ffee`" in footer and "- versions: iclbench 0.1.0; torch 2.13.0" in footer
    assert "- devices: `NVIDIA H200`; dtypes: `float32`" in footer
    assert "- seeds: 0, 1, 2, 3; evaluation tasks per (task, seed): 100, 200" in footer
    assert "| gd " in footer and "builtins (plugins/gd.py, sha256 abababababab)" in footer
    assert "s, seeds 0/1/2/3: eta 6/7/8/9" in footer
    assert "From 18 records (3 diverged, 2 failed, 13 ok)" in footer
    assert prov["failures"][0] == {"suite": "s", "learner": "tf", "task": "home", "seed": 0, "stage": "fit", "error": "boom"}
    assert "- failed: `tf` on s/home, seed 0, in fit: boom" in footer


# --- paired differences ------------------------------------------------------------------------

def test_paired_loss_differences_get_their_own_table(tmp_path):
    records = [rec(name, seed, "home", loss, ind=True, loss_diff=diff, loss_diff_ci95=0.02, pred_diff=0.5, pred_diff_ci95=0.1)
               for seed in (0,) for name, loss, diff in (("gd", 1.0, 0.0), ("lsa", 0.9, -0.1), ("zero", 1.5, 0.5))]
    md = board(records, tmp_path)
    head = "### loss difference to `gd` (paired, same tasks)"
    assert head in md and md.index(head) < md.index("### pred_diff against `gd`")
    assert "mean ± paired 95 % CI over evaluation tasks; below zero: lower loss than `gd`" in md
    section = md_rows(md[md.index(head):md.index("### pred_diff")])
    assert section[1:] == [["lsa", "1", "100", "-0.1 ± 0.02"], ["gd", "1", "100", "0 ± 0.02"],
                           ["zero", "1", "100", "0.5 ± 0.02"]]
    row = next(r for r in csv_rows(tmp_path) if r["learner"] == "lsa" and r["metric"] == "loss_diff")
    assert (row["reference"], float(row["mean"]), float(row["ci95"])) == ("gd", -0.1, 0.02)


# --- plots -------------------------------------------------------------------------------------

def test_markdown_links_its_plots_and_only_an_owned_folder_is_pruned(tmp_path):
    (tmp_path / "figures").mkdir()
    for name in ("old-shift.png", "figures/analysis.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    leaderboard.render(RECORDS, tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Plots\n\n![s-range](s-range.png)\n" in md
    assert (tmp_path / "old-shift.png").exists()  # not pruned unless the folder is the render's own
    (tmp_path / ".iclbench-manifest.json").write_text(json.dumps({"writer": "leaderboard", "files": ["old-shift.png"]}))
    leaderboard.render(RECORDS, tmp_path, prune=True)  # an earlier render's plot, by its manifest
    assert not (tmp_path / "old-shift.png").exists()
    assert all((tmp_path / n).exists() for n in ("s-range.png", "figures/analysis.png", "notes.txt", "leaderboard.md"))
    assert "## Plots" not in board(RECORDS, tmp_path)  # no plots written, none linked


def test_prune_stale_deletes_only_top_level_pngs_not_written(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "b.png", "sub/c.png", "d.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert prune_stale(tmp_path, [tmp_path / "a.png"]) == [tmp_path / "b.png"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png", "c.png", "d.txt"]


def test_summary_is_the_tables_alone():
    text = leaderboard.summary(RECORDS + RECORDS[:2])  # a duplicate counts once
    assert text.startswith("## Suite `s`") and "| gd            | 2       | 100     | 2 ± 13 " in text
    assert "## Plots" not in text and "## Provenance" not in text
