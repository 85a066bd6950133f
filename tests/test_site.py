"""The static site of a published reproduction (`iclbench publish --html`), parsed back: every
number of leaderboard.json in its table, every link and image resolving, the findings, the
inline sort script, nothing absolute and nothing fetched from elsewhere."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from iclbench.publish import publish
from iclbench.reproduce import Finding, Results
from iclbench.site import published_subfolders, write_site

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "leaderboard"
SMALL_SUITES = ("garg-tree",)  # a suite of the garg publication with two references: quick to re-render


class Page(HTMLParser):
    """One page's tables (each under its latest <h2>: header cells and body rows of (text, attributes)),
    links, images, scripts and element ids."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.tables: list[dict] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[dict] = []
        self.ids: set[str] = set()
        self.heading = ""
        self._text: list[str] | None = None
        self._cell: dict | None = None
        self._script: dict | None = None
        self.feed(path.read_text(encoding="utf-8"))
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self.tables.append({"class": a.get("class", ""), "heading": self.heading, "head": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell, self._text = {"tag": tag, "attrs": a}, []
        elif tag == "h2":
            self._text = []
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self._script = {"attrs": a, "text": ""}
            self.scripts.append(self._script)

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            text = "".join(self._text).strip()
            into = self.tables[-1]["head"] if tag == "th" else self.tables[-1]["rows"][-1]
            into.append((text, self._cell["attrs"]))
            self._cell = self._text = None
        elif tag == "h2" and self._text is not None:
            self.heading, self._text = "".join(self._text).strip(), None
        elif tag == "tr" and self.tables and self.tables[-1]["rows"] == [[]]:
            self.tables[-1]["rows"].pop()  # the header row
        elif tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
        if self._script is not None:
            self._script["text"] += data


def pages(folder: Path) -> dict[str, Page]:
    return {p.name: Page(p) for p in sorted((folder / "site").glob("*.html"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory, catalog):
    """A garg publication of one suite, re-rendered by `publish` from the committed records, and its site."""
    folder = tmp_path_factory.mktemp("site") / "garg"
    folder.mkdir()
    source = PUBLISHED / "garg"
    shutil.copy(source / "reproduction.json", folder)
    lines = (source / "results.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["suite"] in SMALL_SUITES]
    (folder / "results.jsonl").write_text("".join(f"{line}\n" for line in kept))
    repro = catalog.reproductions["garg"]()
    publish(folder, repro)
    written = write_site(folder, repro)
    return folder, repro, written


def table_cell(page: Page, heading: str, kind: str, key: tuple[str, ...], metric: str) -> tuple[str, dict]:
    """The cell of `metric` in the row `key` (learner, or learner and reference) of the scores or
    comparisons table under `heading`."""
    tables = [t for t in page.tables if t["heading"] == heading]
    table = tables[0] if kind == "scores" else tables[1]
    column = [attrs.get("data-metric") for _, attrs in table["head"]].index(metric)
    rows = [row for row in table["rows"] if tuple(text for text, _ in row[:len(key)]) == key]
    assert len(rows) == 1, (heading, key)
    return rows[0][column]


def expected_text(row: dict) -> str:
    return f"{row['mean']:.4g}" if row["ci95"] is None else f"{row['mean']:.4g} ± {row['ci95']:.2g}"


def test_every_number_of_the_leaderboard_is_in_its_suite_page(small):
    folder, _, written = small
    rows = json.loads((folder / "leaderboard.json").read_text())["rows"]
    site = pages(folder)
    assert sorted(p.name for p in written) == sorted(site) == ["garg-tree.html", "index.html"]
    for suite in SMALL_SUITES:
        page = site[f"{suite}.html"]
        assert page.tables and all(t["head"] and t["rows"] for t in page.tables)
        for row in (r for r in rows if r["suite"] == suite):
            heading = f"{row['group'] or 'in distribution'}: {row['task']}"
            key = (row["learner"], row["reference"]) if row["reference"] else (row["learner"],)
            text, attrs = table_cell(page, heading, "comparisons" if row["reference"] else "scores", key, row["metric"])
            assert float(attrs["data-sort"]) == row["mean"] and text == expected_text(row)
    causal = table_cell(site["garg-tree.html"], "in distribution: tree", "scores", ("causal-tf",), "loss")
    loss = next(r for r in rows if (r["suite"], r["learner"], r["metric"]) == ("garg-tree", "causal-tf", "loss"))
    assert causal[0] == f"{loss['mean']:.4g} ± {loss['ci95']:.2g}"


def test_every_link_and_image_resolves_to_a_file_beside_it(small):
    folder, _, _ = small
    shown = []
    for name, page in pages(folder).items():
        for ref in page.links + page.images:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), (name, ref)
            if parts.path:
                assert (page.path.parent / unquote(parts.path)).is_file(), (name, ref)
            else:
                assert parts.fragment in page.ids, (name, ref)
        for src in page.images:
            assert src.startswith("../") and src.endswith(".png")
            shown.append(unquote(src)[3:])
    assert sorted(shown) == sorted(p.name for p in folder.glob("*.png"))  # every plot, on one page each
    assert "../function-classes-error-vs-context.png" in pages(folder)["index.html"].images  # no single suite's
    assert all(src.startswith("../garg-tree-") for src in pages(folder)["garg-tree.html"].images)


def test_the_findings_table_has_a_row_per_finding_with_yes_or_no(small):
    folder, repro, _ = small
    findings = repro.findings(Results(folder))
    index = pages(folder)["index.html"]
    table = next(t for t in index.tables if "findings" in t["class"])
    assert [text for text, _ in table["head"]][:4] == ["#", "claim", "ours", "holds"]
    assert len(table["rows"]) == len(findings) == 5
    for row, f in zip(table["rows"], findings):
        assert row[1][0] == f.claim and row[2][0] == f.ours and row[4][0] == f.why
        assert row[3][0] == {True: "yes", False: "no", None: "inconclusive"}[f.holds]
    text = index.path.read_text()
    meta = json.loads((folder / "reproduction.json").read_text())
    assert meta["git_commit"] in text and "3124 s over 2 resumed" in text and "torch 2.13.0+cpu" in text
    assert '<a href="garg-tree.html">garg-tree</a>' in text


def test_pages_sort_with_an_inline_script_and_fetch_nothing(small):
    folder, _, _ = small
    for name, page in pages(folder).items():
        text = page.path.read_text()
        assert page.scripts and all("src" not in s["attrs"] for s in page.scripts), name
        assert any("addEventListener" in s["text"] and "data-sort" in s["text"] for s in page.scripts), name
        assert any("sortable" in t["class"] for t in page.tables), name
        assert "http://" not in text and "https://" not in text and "<link" not in text, name
        assert str(folder) not in text and str(ROOT) not in text, name


def test_text_is_escaped_and_a_rerun_rewrites_the_same_site_and_drops_stale_pages(small, tmp_path):
    folder, repro, _ = small
    copy = tmp_path / "garg"
    shutil.copytree(folder, copy)
    (copy / "site" / "old-suite.html").write_text("stale")
    before = {p.name: p.read_bytes() for p in (folder / "site").glob("*.html")}

    class Hostile(type(repro)):
        def findings(self, results):
            return [Finding("<script>alert(1)</script> & `code`", "a | b", False, "**bold** <why>")]

    write_site(copy, type(repro)())
    assert {p.name: p.read_bytes() for p in (copy / "site").glob("*.html")} == before
    write_site(copy, Hostile())
    text = (copy / "site" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; <code>code</code>" in text
    assert "<strong>bold</strong> &lt;why&gt;" in text and "<script>alert" not in text
    row = next(t for t in Page(copy / "site" / "index.html").tables if "findings" in t["class"])["rows"][0]
    assert [text for text, _ in row] == ["1", "<script>alert(1)</script> & code", "a | b", "no", "bold <why>"]


def test_the_committed_boards_render_with_sub_reproductions_linked(tmp_path, catalog):
    """The paper board and the reproductions inside it: every page parses, every link resolves."""
    board = tmp_path / "leaderboard"
    shutil.copytree(PUBLISHED, board, ignore=shutil.ignore_patterns("site"))
    assert published_subfolders(board) == [board / "garg", board / "mesa"]
    write_site(board / "mesa")  # the installed reproduction named in reproduction.json
    write_site(board / "garg", catalog.reproductions["garg"]())
    written = write_site(board, catalog.reproductions["paper"]())
    assert [p.name for p in written] == ["index.html", "alternating.html", "linear.html", "linear-ood.html",
                                         "sine.html"]
    index = pages(board)["index.html"]
    assert "../garg/site/index.html" in index.links and "../mesa/site/index.html" in index.links
    garg = pages(board / "garg")["index.html"]  # back to the paper's (written after it here: its README) and across
    assert "../../README.md" in garg.links and "../../mesa/site/index.html" in garg.links
    assert "../../garg/README.md" in pages(board / "mesa")["index.html"].links  # written before garg's site
    for folder in (board, board / "garg", board / "mesa"):
        for name, page in pages(folder).items():
            assert page.tables, (folder.name, name)
            for ref in page.links + page.images:
                path = urlsplit(ref).path
                assert not path or (page.path.parent / unquote(path)).is_file(), (folder.name, name, ref)
    linear = pages(board)["linear.html"]
    assert linear.images and not any(src.startswith("../linear-ood-") for src in linear.images)
    assert "../figures/gdpp-conditioning-seed0.png" in index.images
    findings = next(t for t in index.tables if "findings" in t["class"])
    assert {row[3][0] for row in findings["rows"]} == {"yes", "no", "inconclusive"}  # three-valued verdicts


def test_publish_html_through_the_command_line(small, tmp_path, capsys):
    """`iclbench publish --html` re-renders the folder and writes its site; without --html no site."""
    from iclbench.cli import main

    folder = tmp_path / "garg"
    shutil.copytree(small[0], folder, ignore=shutil.ignore_patterns("site"))
    assert main(["publish", str(folder)]) == 0 and not (folder / "site").exists()
    assert main(["publish", "--html", str(folder)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(folder / "site" / "index.html") in printed and str(folder / "site" / "garg-tree.html") in printed
    assert pages(folder)["garg-tree.html"].tables


def synthetic_records() -> list[dict]:
    """Three learners x two seeds on an in-distribution column and a three-shift group, from a
    committed record as template: `b` worse than `a` everywhere, `c` best on the largest shift."""
    template = json.loads((PUBLISHED / "results.jsonl").read_text().splitlines()[0])
    losses = {"a": [1.0, 2.0, 3.0, 4.0], "b": [1.5, 2.5, 3.5, 4.5], "c": [3.0, 3.5, 3.6, 3.9]}
    out = []
    for learner, values in losses.items():
        for seed in (0, 1):
            for i, (task, group, value) in enumerate((("home", None, None), ("s=1", "scale", 1), ("s=2", "scale", 2),
                                                       ("s=3", "scale", 3))):
                loss = values[i] + 0.01 * seed
                out.append({**template, "suite": "toy", "label": learner, "learner": learner, "seed": seed,
                            "task_label": task, "group": group, "value": value, "in_distribution": group is None,
                            "align_to": None, "status": "ok",
                            "metrics": {"loss": loss, "loss_ci95": 0.01, "loss_median": loss / 2, "loss_trimmed": loss}})
    return out


def test_a_plain_results_folder_gets_a_site_with_the_ranking_and_a_coloured_pivot(tmp_path, capsys):
    """`iclbench leaderboard --format html`: the landing summary ranks by the loss with the best in
    bold and the test against it, and the pivot colours each shift's best green and worst red."""
    from iclbench.cli import main
    from iclbench.store import ResultStore

    store = ResultStore(tmp_path / "results")
    for r in synthetic_records():
        store.append(r)
    assert main(["leaderboard", str(tmp_path / "results"), "--format", "html", "--no-plots"]) == 0
    site = tmp_path / "results" / "leaderboard" / "site"
    assert str(site / "index.html") in capsys.readouterr().out
    assert (tmp_path / "results" / "leaderboard" / "leaderboard.json").exists()  # the site's input
    index = Page(site / "index.html")
    summary = next(t for t in index.tables if t["heading"] == "Who is best")
    assert [row[1][0] for row in summary["rows"]] == ["a", "b", "c"]
    assert summary["rows"][0][5][0] == "best" and summary["rows"][0][1][1].get("class") == "best"
    assert summary["rows"][1][5][0] == "worse (p < 0.001)"  # +0.5 on both seeds, no spread: p = 0
    assert "<strong>a</strong>" in index.path.read_text()
    page = Page(site / "toy.html")
    pivot = next(t for t in page.tables if [h for h, _ in t["head"]] == ["learner", "1", "2", "3"])
    hues = {row[0][0]: [cell[1]["style"] for cell in row[1:]] for row in pivot["rows"]}
    assert hues["a"][:2] == ["background: hsl(120, 65%, 82%)"] * 2 and hues["a"][2] == "background: hsl(60, 65%, 82%)"
    assert hues["c"][:2] == ["background: hsl(0, 65%, 82%)"] * 2 and hues["c"][2] == "background: hsl(120, 65%, 82%)"
    assert [row[0][0] for row in pivot["rows"]] == ["a", "b", "c"]  # in the in-distribution order
