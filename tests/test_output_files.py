"""Output files: nothing written outside the folder rendered into, nothing deleted that iclbench
did not write, files replaced whole (a failed render leaves the previous set), and data from the
records escaped in the Markdown and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iclbench import api, board
from iclbench.curve_spec import CurveFigures, CurvePlot
from iclbench.publish import plot_curves, publish
from iclbench.reproduce import Finding, Reproduction
from helpers import board_record

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = [ROOT / "leaderboard", ROOT / "leaderboard" / "garg", ROOT / "leaderboard" / "mesa"]
MANIFEST = ".iclbench-manifest.json"
TABLES = ["leaderboard.md", "leaderboard.csv", "leaderboard.json"]
ORDINARY = ["gd[steps=2]", "lsa[layers=5,clip=10]", "gd++[steps=5,per_step=true]", "lsa[train.batch_size=64]"]
HOSTILE = ["a|b", "x\ny", "<script>alert(1)</script>", "[click](javascript:alert(1))", "back\\|slash", "tick`s"]
NO_SPACE = OSError(28, "No space left on device")


def rec(label: str, task: str, loss: float, suite: str = "s", group: str | None = None, value: float | None = None,
        ind: bool = False, seed: int = 0, **extra) -> dict:
    return {**board_record(label, task, loss, suite=suite, group=group, value=value, ind=ind, seed=seed), **extra}


def shifted(label: str, loss: float, suite: str = "s", groups: tuple[str, ...] = ("range",)) -> list[dict]:
    """An in-distribution record and, per shift group, two shifted ones: one plot per group."""
    out = [rec(label, "home", loss, suite=suite, ind=True)]
    for group in groups:
        out += [rec(label, f"{group}={v}", loss * v, suite=suite, group=group, value=v) for v in (2.0, 4.0)]
    return out


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def split_row(line: str) -> list[str]:
    """A Markdown table row's cells, split where GFM splits: at pipes not escaped by a backslash."""
    cells, cell, i = [], "", 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            cell += line[i:i + 2]
            i += 2
            continue
        if line[i] == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += line[i]
        i += 1
    return [c.strip() for c in cells[1:]]


def tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table of `md`: its rows (the header first, the --- line left out) as cells."""
    found, current = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                found.append(current)
            if not re.fullmatch(r"[|:\- ]+", line):
                current.append(split_row(line))
        else:
            current = None
    return found


def assert_columns_kept(md: str) -> None:
    """Every row of every table has as many cells as its header."""
    for rows in tables(md):
        assert {len(r) for r in rows} == {len(rows[0])}, rows


# --- file names: one helper, confined to the folder ------------------------------------------------

def curves_record(suite: str) -> dict:
    """A record with a prefix curve, a position curve and an alignment to a reference: one plot of each kind."""
    three = [0.01] * 3
    return rec("lsa", "../col", 0.5, suite=suite, ind=True, align_to="../../ref",
               prefix_curve={"k": [0, 1, 2], "error": [1.0, 0.6, 0.3], "ci95": three},
               position_curve={"t": [1, 2, 3], "loss": [1.0, 0.5, 0.2], "ci95": three, "pred_diff": [0.1, 0.05, 0.01],
                               "pred_diff_ci95": three},
               position_sensitivity={"t": [1, 2, 3], "sens_cos": [0.9, 0.95, 0.99], "ci95": three})


@pytest.mark.parametrize("suite", ["../../x", "ABSOLUTE"])
def test_a_suite_named_as_a_path_writes_nothing_outside_out(tmp_path, suite):
    """`../../x` or `/abs/path/x` as a suite: every plot (shift, prefix, position, alignment) lands in `out`."""
    (tmp_path / "abs").mkdir()
    suite = str(tmp_path / "abs" / "x") if suite == "ABSOLUTE" else suite
    out = tmp_path / "a" / "b" / "out"
    records = shifted("gd", 1.0, suite) + shifted("zero", 2.0, suite) + [curves_record(suite)]
    written = board.render(records, out)
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == 4 and all(p.parent == out for p in written)
    assert files(tmp_path) == files(out) == {*written}


def test_curve_plots_of_a_crafted_suite_stay_in_the_folder(tmp_path):
    folder = tmp_path / "pub" / "board"
    folder.mkdir(parents=True)
    curve = [{"step": 10, "eval_loss": 0.5}, {"step": 20, "eval_loss": 0.25}]
    records = [rec("lsa", "home", 0.1, suite="../../x", ind=True, fit_info={"curve": curve})]
    curves = CurveFigures(plots={"eval_loss": CurvePlot(stem="training-curves", ylabel="held-out loss")})
    paths = plot_curves(records, folder, curves=curves)
    assert len(paths) == 1 and paths[0].parent == folder
    assert files(tmp_path) == {*paths}


def test_one_helper_names_plots_and_site_pages_alike(tmp_path):
    """The site finds a crafted suite's plots because it names them with the same helper as the plots."""
    from iclbench.filenames import safe_stem
    from iclbench.site import page_names, plots_by_suite

    suite = "../../x"
    records = shifted("gd", 1.0, suite) + [curves_record(suite)]
    written = board.render(records, tmp_path, formats=("md",))
    stem = safe_stem(suite)
    assert "/" not in stem and not stem.startswith(".")
    assert all(p.name.startswith(f"{stem}-") for p in written if p.suffix == ".png")
    assert page_names([suite]) == {suite: f"{stem}.html"}
    assert sorted(plots_by_suite(tmp_path, [suite])[suite]) == sorted(p.name for p in written if p.suffix == ".png")


@pytest.mark.parametrize("name", ["..", ".", "", "/", "../../etc/passwd", "/abs/x", "a\\b", "x\0y", ".hidden", "a" * 400])
def test_safe_names_are_plain_entries_of_their_folder(tmp_path, name):
    from iclbench.filenames import confined, safe_path, safe_stem

    path = safe_path(tmp_path, name, ".png")
    assert path.parent == tmp_path and not path.name.startswith(".") and len(path.name) <= 255
    assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name)
    assert safe_stem("b" * 400) != safe_stem("b" * 399 + "c")  # cut long names stay apart
    with pytest.raises(ValueError, match=re.escape(repr("../x"))):
        confined(tmp_path, "../x")


@pytest.mark.parametrize("folder", PUBLISHED, ids=["paper", "garg", "mesa"])
def test_every_published_name_is_kept(folder):
    """The published plots and site pages keep their names: re-rendering renames nothing."""
    from iclbench.filenames import safe_stem
    from iclbench.site import page_names

    for png in folder.glob("*.png"):
        assert safe_stem(png.stem) == png.stem, png.name
    suites = sorted({r["suite"] for r in json.loads((folder / "leaderboard.json").read_text())["rows"]})
    pages = page_names(suites)
    assert sorted(pages.values()) == sorted(p.name for p in (folder / "site").glob("*.html") if p.name != "index.html")


# --- pruning: only what iclbench's own earlier render listed ---------------------------------------

def test_a_render_deletes_no_file_it_did_not_write(tmp_path):
    """A user's holiday.png and a publication's figures (its reproduction.json lost) survive two renders."""
    out = tmp_path / "out"
    out.mkdir()
    theirs = ["holiday.png"] + [p.name for p in PUBLISHED[0].glob("*.png")]
    for name in theirs:
        (out / name).write_bytes(b"\x89PNG not iclbench's")
    records = shifted("gd", 1.0) + shifted("zero", 2.0)
    for _ in range(2):  # the second render has a manifest of the first
        api.render_leaderboard(records, out, ["md"])
    assert all((out / name).read_bytes() == b"\x89PNG not iclbench's" for name in theirs)
    assert (out / "s-range.png").exists() and (out / "leaderboard.md").exists()


def test_a_render_prunes_the_stale_plots_its_manifest_lists(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"mine")
    two = shifted("gd", 1.0, groups=("range", "scale")) + shifted("zero", 2.0, groups=("range", "scale"))
    api.render_leaderboard(two, out, ["md", "csv"])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == {"writer": "leaderboard", "files": ["leaderboard.csv", "leaderboard.md", "s-range.png",
                                                           "s-scale.png"]}
    one = [r for r in two if r["group"] != "scale"]
    api.render_leaderboard(one, out, ["md"])
    assert not (out / "s-scale.png").exists()  # a dropped shift group's plot: iclbench's, listed, stale
    assert (out / "s-range.png").exists() and (out / "holiday.png").read_bytes() == b"mine"
    assert (out / "leaderboard.csv").exists()  # a table not asked for this time stays, as it always has
    assert json.loads((out / MANIFEST).read_text())["files"] == ["leaderboard.md", "s-range.png"]


def test_a_crafted_manifest_deletes_nothing_outside_its_folder(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "sub" / "keep.png").write_bytes(b"keep")
    (out / "stale.png").write_bytes(b"an earlier render's")
    listed = ["../victim.txt", str(victim), "sub", "sub/keep.png", ".", "..", "", "stale.png", 3, None]
    (out / MANIFEST).write_text(json.dumps({"writer": "leaderboard", "files": listed}))
    api.render_leaderboard(shifted("gd", 1.0), out, ["md"])
    assert victim.read_text() == "keep" and (out / "sub" / "keep.png").exists()
    assert not (out / "stale.png").exists()
    assert json.loads((out / MANIFEST).read_text())["files"] == ["leaderboard.md", "s-range.png"]


@pytest.mark.parametrize("manifest", [json.dumps({"writer": "publish", "files": ["fig.png"]}), "{not json",
                                      json.dumps({"writer": "leaderboard", "files": "fig.png"}), json.dumps(["fig.png"])],
                         ids=["another writer's", "unreadable", "files not a list", "not an object"])
def test_a_render_prunes_nothing_without_a_manifest_of_its_own(tmp_path, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fig.png").write_bytes(b"a publication's figure")
    (out / MANIFEST).write_text(manifest)
    api.render_leaderboard(shifted("gd", 1.0), out, ["md"])
    assert (out / "fig.png").read_bytes() == b"a publication's figure"


# --- whole files: a failed render leaves the previous set ------------------------------------------

def test_a_render_failing_part_way_leaves_the_previous_tables(tmp_path, monkeypatch):
    """Disk full while the JSON is written, after the Markdown and CSV: all three stay as they were."""
    out = tmp_path / "out"
    board.render(shifted("gd", 1.0), out, plots=False)
    before = {name: (out / name).read_bytes() for name in TABLES}

    def full(value):
        raise NO_SPACE

    monkeypatch.setattr(board, "json_value", full)
    with pytest.raises(OSError, match="No space left"):
        board.render(shifted("gd", 1.0) + shifted("zero", 2.0), out, plots=False)
    assert {name: (out / name).read_bytes() for name in TABLES} == before
    assert temporaries(out) == []


def test_a_markdown_cut_mid_row_never_replaces_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "out"
    board.render(shifted("gd", 1.0), out, plots=False)
    before = (out / "leaderboard.md").read_bytes()
    real = Path.write_text

    def half(self, data, *args, **kwargs):
        if "leaderboard.md" in self.name:
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise NO_SPACE
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", half)
    with pytest.raises(OSError, match="No space left"):
        board.render(shifted("gd", 1.0) + shifted("zero", 2.0), out, plots=False)
    assert (out / "leaderboard.md").read_bytes() == before and temporaries(out) == []


def test_a_plot_cut_short_never_replaces_the_previous_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "out"
    board.render(shifted("gd", 1.0), out)
    before = {name: (out / name).read_bytes() for name in TABLES + ["s-range.png"]}

    def torn(self, fname, *args, **kwargs):
        data = b"\x89PNG\r\n"  # the first bytes, then the disk is full
        fname.write(data) if hasattr(fname, "write") else Path(fname).write_bytes(data)
        raise NO_SPACE

    monkeypatch.setattr(Figure, "savefig", torn)
    with pytest.raises(OSError, match="No space left"):
        board.render(shifted("gd", 1.0) + shifted("zero", 2.0), out)
    assert {name: (out / name).read_bytes() for name in before} == before and temporaries(out) == []


# --- publications ------------------------------------------------------------------------------------

def fake_publication(tmp_path: Path, records: list[dict], findings: list[Finding] = ()) -> tuple[Path, Reproduction]:
    """A reproduction folder (reproduction.json, results.jsonl) and its Reproduction, stating `findings`."""
    spec = tmp_path / "fake.toml"
    spec.write_text('name = "fake"\n[budgets.small]\ntrain_steps = 1\nn_tasks = 10\n[[runs]]\nsuite = "s"\n'
                    'learners = ["gd"]\n')

    class Fake(Reproduction):
        name = "fake"
        spec_file = spec

        def findings(self, results):
            return list(findings)

    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "reproduction.json").write_text(json.dumps({
        "reproduction": "fake", "budget": "small", "budget_values": {"train_steps": 1, "n_tasks": 10}, "seeds": [0],
        "device": "cpu", "versions": {"iclbench": "0"}, "git_commit": None, "labels": {}, "wall_seconds": 1.0}))
    return folder, Fake()


def test_a_publication_failing_part_way_leaves_the_previous_one_and_a_users_file(tmp_path):
    folder, repro = fake_publication(tmp_path, shifted("gd", 1.0))
    (folder / "holiday.png").write_bytes(b"mine")
    publish(folder, repro)
    names = TABLES + ["README.md", "s-range.png"]
    before = {name: (folder / name).read_bytes() for name in names}
    with (folder / "results.jsonl").open("a") as f:  # new records: every table would change
        f.write("".join(json.dumps(r) + "\n" for r in shifted("zero", 2.0)))

    class Failing(type(repro)):
        def figures(self, results, out):
            raise NO_SPACE

    with pytest.raises(OSError, match="No space left"):
        publish(folder, Failing())
    assert {name: (folder / name).read_bytes() for name in names} == before and temporaries(folder) == []
    publish(folder, repro)
    assert (folder / "holiday.png").read_bytes() == b"mine"  # no publication wrote it, none deletes it
    assert json.loads((folder / MANIFEST).read_text()) == {"writer": "publish", "files": sorted(names)}


def test_readme_tables_keep_their_columns_and_hold_no_html(tmp_path):
    records = shifted("gd", 1.0) + [{**r, "seconds": 1.5} for r in shifted("a|b", 2.0)]
    findings = [Finding("<script>alert(1)</script> and a | b", "x < 1e-4 -> `code`", False, "**why**\nnext line")]
    folder, repro = fake_publication(tmp_path, records, findings)
    publish(folder, repro)
    readme = (folder / "README.md").read_text()
    assert_columns_kept(readme)
    assert "<script" not in readme and "&lt;script>alert(1)&lt;/script>" in readme
    assert "| 1 | &lt;script>alert(1)&lt;/script> and a \\| b | x < 1e-4 -> `code` | **no** | **why** next line |" in readme
    assert "| a\\|b |" in readme  # the time table's learner


# --- Markdown ------------------------------------------------------------------------------------

class Cells(HTMLParser):
    """The text of each table cell of an HTML document, row by row, and the tags it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def hostile_board(tmp_path: Path) -> str:
    labels = ORDINARY + HOSTILE
    records = [rec(label, "t|u", 1.0 + i, ind=True) for i, label in enumerate(labels)]
    records += [rec("gd", "<b>t</b>", 2.0, group="g|h\n<i>", value=1.0)]
    board.render(records, tmp_path, plots=False)
    return (tmp_path / "leaderboard.md").read_text()


def test_a_label_keeps_the_tables_columns_and_passes_no_html(tmp_path):
    md = hostile_board(tmp_path)
    assert_columns_kept(md)
    loss = tables(md)[0]
    assert loss[0] == ["learner", "seeds", "tasks", "t\\|u"]
    learners = [row[0] for row in loss[1:]]
    assert learners[:len(ORDINARY)] == ORDINARY  # ordinary labels exactly as they are
    assert learners[len(ORDINARY):] == ["a\\|b", "x y", "&lt;script&gt;alert(1)&lt;/script&gt;",
                                        "[click]\\(javascript:alert(1))", "back\\\\\\|slash", "tick&#96;s"]
    assert "<script" not in md and "<b>" not in md and "<i>" not in md and "](javascript" not in md
    assert "### g\\|h &lt;i&gt;\n" in md


def test_rendered_markdown_shows_each_label_as_it_is(tmp_path):
    """Rendered as Markdown (tables extension), each learner is one cell holding its label's text."""
    markdown = pytest.importorskip("markdown")
    md = hostile_board(tmp_path)
    parser = Cells()
    parser.feed(markdown.markdown(md, extensions=["tables"]))
    assert "script" not in parser.tags and "b" not in parser.tags and "a" not in parser.tags
    loss = parser.rows[:1 + len(ORDINARY) + len(HOSTILE)]
    assert [row[0] for row in loss[1:]] == ORDINARY + [h.replace("\n", " ") for h in HOSTILE]
    assert {len(row) for row in loss} == {4}


def test_code_spans_and_the_provenance_footer_hold_data_only(tmp_path):
    """A suite or reference with backticks cannot leave its code span; the footer escapes what the
    records say (labels, hyperparameter names, errors) and keeps its own `<br>`."""
    suite = "s`<img src=x>`"
    records = [rec("p|q", "home", 1.0, suite=suite, ind=True, hyperparameters={"eta<b>": 0.5}),
               rec("p|q", "home", 1.5, suite="t", ind=True, hyperparameters={"eta<b>": 0.7}),
               {**rec("zero", "home", 2.0, suite=suite, ind=True), "status": "failed", "stage": "fit",
                "error": "boom <img src=x> | y\nTraceback line", "metrics": None}]
    board.render(records, tmp_path, plots=False)
    md = (tmp_path / "leaderboard.md").read_text()
    heading = "## Suite `` s`<img src=x>` ``"  # a fence longer than any run inside: all of it code
    assert heading + "\n" in md and "<img" not in md.replace(heading, "")
    assert "boom &lt;img src=x&gt; \\| y" in md and "Traceback" not in md
    footer = md[md.index("## Provenance"):]
    assert_columns_kept(footer)
    assert "eta&lt;b&gt; 0.5<br>" in footer and "| p\\|q " in footer


def test_escaping_leaves_ordinary_names_and_numbers_alone():
    from iclbench.escaping import csv_cell, md_cell, md_code, md_text

    for label in ORDINARY + ["linear-ood", "input range", "N=20", "zero (zero predictor)", "0.1 ± 0.02"]:
        assert md_text(label) == label and md_code(label) == f"`{label}`" and md_cell(label) == label
        assert csv_cell(label) == label
    assert md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``"
    assert md_cell("x < 1e-4, a->b, <br>") == "x < 1e-4, a->b, &lt;br>"
    for number in ("-0.5", "-1e-3", "+2", "-inf", "-nan", "-3"):
        assert csv_cell(number) == number
    for formula in ("=1+1", "+A1", "-A1", "@SUM(A1)", "\tx", "\rx", "-", "=-0.5"):
        assert csv_cell(formula) == "'" + formula
    assert csv_cell(-0.5) == -0.5 and csv_cell(None) is None


# --- CSV ------------------------------------------------------------------------------------------

def test_csv_text_cells_cannot_run_as_formulas(tmp_path):
    labels = ['=HYPERLINK("http://x","y")', "+1+1", "@SUM(A1)", "-2+3", "\tx", "-0.5", "gd[steps=2]"]
    records = [rec(label, "=task", -0.5 - i, ind=True) for i, label in enumerate(labels)]
    records.append(rec("div", "=task", float("-inf"), ind=True))
    board.render(records, tmp_path, plots=False)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text())))
    by = {r["learner"]: r for r in rows}
    assert sorted(by) == sorted(["'" + label for label in labels[:5]] + ["-0.5", "gd[steps=2]", "div"])
    assert all(r["task"] == "'=task" for r in rows)
    assert by["-0.5"]["mean"] == "-5.5" and by["'=HYPERLINK(\"http://x\",\"y\")"]["mean"] == "-0.5"  # numbers stay
    assert by["div"]["nonfinite"] == "-inf"
    learners = {r["learner"] for r in json.loads((tmp_path / "leaderboard.json").read_text())["rows"]}
    assert set(labels) < learners  # the JSON holds the data as it is
