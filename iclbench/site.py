"""A static HTML site of a published reproduction folder (`iclbench publish --html`).

`write_site(folder)` reads what `publish` wrote there (leaderboard.json, the PNG plots,
reproduction.json) and the reproduction's findings, and writes `folder/site/`: index.html (the
description, the findings, provenance, links) and one page per suite with sortable tables and
that suite's plots. Pages link the PNGs where they are (`../name.png`) and carry their own small
script, so the site works opened from the file system: no server, no network, no copies.
The pages hold no timestamp: the same folder gives the same site, byte for byte.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from iclbench import board
from iclbench.filenames import safe_stem
from iclbench.outputs import write_text
from iclbench.provenance import number, plugin_text
from iclbench.publish import budget_line, execution_flags, wall_line
from iclbench.reproduce import Deviation, Finding, Reproduction, Results

SITE = "site"
FILES = ["README.md", "leaderboard.md", "leaderboard.csv", "leaderboard.json", "results.jsonl", "analyses.jsonl"]
METRIC_NAMES = {
    "loss": "loss", "loss_median": "median loss", "loss_trimmed": "trimmed-mean loss",
    "position_loss": "loss over positions", "position_pred_diff": "prediction difference over positions",
    "accuracy": "sign accuracy", "loss_diff": "Δ loss (paired)",
    "position_loss_diff": "Δ loss over positions (paired)",
    "pred_diff": "prediction difference", "sens_cos": "sensitivity cosine", "sens_diff": "sensitivity difference",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td[data-sort] { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; background: #f3f3f3; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.no { color: #b00020; font-weight: bold; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""

# Click a header to sort its table; numbers sort by the cell's data-sort value, cells without
# one (blank, diverged, failed) stay last in either direction.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var up = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.some(function (r) { return r.cells[col] && r.cells[col].hasAttribute("data-sort"); });
    function key(r) {
      var c = r.cells[col];
      if (!c) { return null; }
      if (numeric) { return c.hasAttribute("data-sort") ? parseFloat(c.getAttribute("data-sort")) : null; }
      return c.textContent;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var d = numeric ? x - y : x.localeCompare(y);
      return up ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


@dataclass
class Column:
    """One evaluation column of a suite: its leaderboard.json rows keyed by (learner, metric, reference)."""

    group: str
    task: str
    cells: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def metrics(self, referenced: bool) -> list[str]:
        """The metrics measured against a reference (or not), in leaderboard.json's order."""
        return list(dict.fromkeys(m for (_, m, ref) in self.cells if bool(ref) == referenced))

    def references(self) -> list[str]:
        return sorted({ref for (_, _, ref) in self.cells if ref})

    def learners(self) -> list[str]:
        """Learners by loss: finished ones first by mean, then diverged, then failed; ties by name."""
        def key(name: str) -> tuple:
            c = self.cells.get((name, "loss", ""))
            if c is None or c["status"] == "failed" or c["mean"] is None:
                return (2, 0.0, name)
            return (0 if c["status"] == "ok" else 1, c["mean"], name)

        return sorted({name for (name, _, _) in self.cells}, key=key)


def write_site(folder: Path, repro: Reproduction | None = None) -> list[Path]:
    """Write `folder/site/` (index.html and `<suite>.html` per suite) from the published files in
    `folder`; returns the pages written and deletes other pages left in site/ by an earlier call.

    `repro` gives the findings, the description and the deviations, from the same records the
    README's findings come from; without it, the installed reproduction named in reproduction.json."""
    folder = Path(folder)
    meta = json.loads((folder / "reproduction.json").read_text())
    board = json.loads((folder / "leaderboard.json").read_text())
    repro = repro or installed_reproduction(meta["reproduction"])
    site = folder / SITE
    site.mkdir(exist_ok=True)
    suites = suite_columns(board["rows"])
    names = page_names(list(suites))
    plots = plots_by_suite(folder, list(suites))
    written = []
    for suite, columns in suites.items():
        body = suite_page(suite, columns, plots.get(suite, []), board["provenance"])
        written.append(write(site / names[suite], f"{suite}: {meta['reproduction']}", body))
    index = index_page(folder, meta, board["provenance"], repro, names, plots)
    written.insert(0, write(site / "index.html", f"Reproduction {meta['reproduction']}", index))
    for stale in sorted(set(site.glob("*.html")) - set(written)):
        stale.unlink()
    return written


def installed_reproduction(name: str) -> Reproduction:
    """The reproduction `name` from the installed plugins, as `iclbench publish` finds it."""
    from iclbench.catalog import build_catalog
    from iclbench.plugins import make_plugin_manager

    return build_catalog(make_plugin_manager()).reproductions[name]()


def write(path: Path, title: str, body: str) -> Path:
    """The page at `path`, written under a temporary name and renamed into place (no half page)."""
    return write_text(path, page(title, body))


def page(title: str, body: str) -> str:
    """A whole HTML document: inline style and sort script, nothing fetched from elsewhere."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escaped text with the Markdown the publisher's prose uses: `code` and **bold**."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def href(path: str) -> str:
    """A relative link, percent-encoded for the URL and escaped for the attribute."""
    return esc(quote(path))


def link(path: str, text: str) -> str:
    return f'<a href="{href(path)}">{esc(text)}</a>'


def td(text: Any, sort: float | None = None, cls: str = "", raw: bool = False) -> str:
    """A cell; `sort`, a number the sort script orders by; `raw`: `text` is HTML already escaped."""
    attrs = (f' data-sort="{float(sort)!r}"' if sort is not None else "") + (f' class="{cls}"' if cls else "")
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def th(text: str, metric: str = "") -> str:
    attrs = f' data-metric="{esc(metric)}"' if metric else ""
    return f'<th scope="col"{attrs} title="click to sort">{esc(text)}</th>'


def table(head: list[str], rows: list[list[str]], cls: str = "sortable") -> str:
    body = "\n".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table class="{cls}">\n<thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def suite_columns(rows: list[dict[str, Any]]) -> dict[str, list[Column]]:
    """suite -> its evaluation columns, suites by name, columns in leaderboard.json's (canonical) order."""
    suites: dict[str, dict[tuple[str, str], Column]] = {}
    for r in rows:
        column = suites.setdefault(r["suite"], {}).setdefault((r["group"], r["task"]), Column(r["group"], r["task"]))
        column.cells[(r["learner"], r["metric"], r["reference"])] = r
    return {suite: list(columns.values()) for suite, columns in sorted(suites.items())}


def page_names(suites: list[str]) -> dict[str, str]:
    """suite -> its page's file name: `<suite>.html`, with characters unsafe in a file name replaced
    (`filenames.safe_stem`, and never index.html, the reproduction's page)."""
    names = {}
    for suite in suites:
        stem = safe_stem(suite, fallback="suite")
        names[suite] = f"{stem}-suite.html" if stem == "index" else f"{stem}.html"
    return names


def plots_by_suite(folder: Path, suites: list[str]) -> dict[str | None, list[str]]:
    """The PNGs of the publication, relative to `folder`, keyed by the suite each one shows (the
    longest suite file-name stem, `filenames.safe_stem`, its file name starts with:
    `linear-ood-...` is linear-ood's, not linear's); None keys the rest, the analyses' figures/
    among them."""
    stems = {s: safe_stem(s) for s in suites}
    out: dict[str | None, list[str]] = {}
    for path in sorted(folder.glob("*.png")):
        owners = [s for s in suites if path.name.startswith(f"{stems[s]}-")]
        out.setdefault(max(owners, key=lambda s: len(stems[s]), default=None), []).append(path.name)
    out.setdefault(None, []).extend(f"figures/{p.name}" for p in sorted((folder / "figures").glob("*.png")))
    return out


def cell_text(row: dict[str, Any]) -> str:
    """A cell as leaderboard.md writes it (`board.cell_text`), from a leaderboard.json row."""
    def real(x: Any) -> float:
        return math.nan if x is None else float(x)

    cell = SimpleNamespace(status=row["status"], nonfinite=row["nonfinite"], mean=real(row["mean"]),
                           ci95=real(row.get("ci95")), seeds=row.get("seeds"), failed_seeds=row.get("failed_seeds"))
    return board.cell_text(cell, None)


def value_td(row: dict[str, Any] | None) -> str:
    """A metric's cell, sorted by its mean when it has a finished one."""
    if row is None:
        return td("")
    finished = row["status"] == "ok" and row["mean"] is not None
    return td(cell_text(row), row["mean"] if finished else None)


def count_tds(row: dict[str, Any]) -> list[str]:
    """The seeds and evaluation tasks per seed behind a cell (tasks: a range as text when seeds differ)."""
    tasks = row.get("tasks")
    counted = td("" if tasks is None else tasks, tasks if isinstance(tasks, int) else None)
    return [td(row["seeds"], row["seeds"]), counted]


def scores_table(column: Column) -> str:
    """Learners x the metrics measured on their own (loss first), with the seeds and tasks of each row."""
    metrics = column.metrics(referenced=False)
    head = [th("learner")] + [th(METRIC_NAMES.get(m, m), m) for m in metrics] + [th("seeds"), th("tasks")]
    rows = []
    for learner in column.learners():
        cells = [column.cells.get((learner, m, "")) for m in metrics]
        present = [c for c in cells if c is not None]
        if present:
            rows.append([td(learner)] + [value_td(c) for c in cells] + count_tds(present[0]))
    return table(head, rows)


def comparisons_table(column: Column) -> str:
    """(learner, reference) x the metrics measured against the reference on the same tasks: the
    paired loss difference with its paired CI, and the alignment metrics."""
    metrics = column.metrics(referenced=True)
    if not metrics:
        return ""
    head = [th("learner"), th("reference")] + [th(METRIC_NAMES.get(m, m), m) for m in metrics] + [th("seeds")]
    rows = []
    for ref in column.references():
        for learner in column.learners():
            cells = [column.cells.get((learner, m, ref)) for m in metrics]
            present = [c for c in cells if c is not None]
            if present:
                seeds = present[0]["seeds"]
                rows.append([td(learner), td(ref)] + [value_td(c) for c in cells] + [td(seeds, seeds)])
    return ("<p>Against a reference learner, on the same evaluation tasks: Δ loss is this learner's loss minus "
            "the reference's, with the paired CI (below zero: lower loss than the reference).</p>\n"
            + table(head, rows))


def ci_note(columns: list[Column]) -> str:
    """What the ± means on a suite's page."""
    over = {c["ci_over"] for col in columns for c in col.cells.values() if c.get("ci_over")}
    if over == {"seeds"}:
        return "95 % CI over seeds (Student t)"
    if over == {"tasks"}:
        return "95 % CI over evaluation tasks"
    return "95 % CI over seeds (Student t) in cells with several seeds, over evaluation tasks in 1-seed cells"


def column_title(column: Column) -> str:
    return f"{column.group or 'in distribution'}: {column.task}"


def contents(columns: list[Column], plots: bool) -> str:
    """Links to each column's tables, one line per shift group, and to the plots."""
    groups: dict[str, list[str]] = {}
    for i, column in enumerate(columns):
        groups.setdefault(column.group, []).append(f'<a href="#column-{i}">{esc(column.task)}</a>')
    items = "".join(f"<li>{esc(group or 'in distribution')}: {', '.join(links)}</li>"
                    for group, links in groups.items())
    return f"<ul>{items}</ul>" + ('\n<p><a href="#plots">Plots</a></p>' if plots else "")


def hyperparameter_table(suite: str, prov: dict[str, Any]) -> str:
    """The hyperparameters tuned on `suite`'s training tasks, per learner and seed (leaderboard.json's provenance)."""
    rows = []
    for learner, info in sorted((prov.get("learners") or {}).items()):
        for seed, values in ((info.get("hyperparameters") or {}).get(suite) or {}).items():
            text = ("; ".join(f"{k} {number(v)}" for k, v in values.items()) if isinstance(values, dict)
                    else "differs between records: " + json.dumps(values))
            rows.append([td(learner), td(seed, float(seed) if seed.lstrip("-").isdigit() else None), td(text)])
    if not rows:
        return ""
    return ("<h2 id=\"hyperparameters\">Tuned hyperparameters</h2>\n<p>Tuned on training tasks, never on "
            "evaluation tasks.</p>\n" + table([th("learner"), th("seed"), th("hyperparameters")], rows))


def figures(paths: Sequence[str]) -> str:
    """Each plot in place, linked relative to the site folder, never copied."""
    return "\n".join(f'<figure><a href="{href("../" + p)}"><img src="{href("../" + p)}" alt="{esc(Path(p).stem)}" '
                     f'loading="lazy"></a><figcaption>{esc(p)}</figcaption></figure>' for p in paths)


def suite_page(suite: str, columns: list[Column], plots: list[str], prov: dict[str, Any]) -> str:
    """A suite's page: per evaluation column its scores and comparisons tables, then the tuned
    hyperparameters and every plot of the suite."""
    parts = [f'<p><a href="index.html">← reproduction</a></p>\n<h1>Suite <code>{esc(suite)}</code></h1>',
             f"<p>Cells: mean ± {esc(ci_note(columns))}; <em>seeds</em>: seeds behind the row, <em>tasks</em>: "
             "evaluation tasks per seed. Click a column header to sort.</p>", contents(columns, bool(plots))]
    for i, column in enumerate(columns):
        parts += [f'<h2 id="column-{i}">{esc(column_title(column))}</h2>', scores_table(column),
                  comparisons_table(column)]
    parts.append(hyperparameter_table(suite, prov))
    if plots:
        parts += ['<h2 id="plots">Plots</h2>', figures(plots)]
    return "\n".join(p for p in parts if p)


def findings_table(findings: Sequence[Finding]) -> str:
    """The paper's claims, ours, yes / no, and why: the README's findings table."""
    if not findings:
        return "<p>This reproduction states no findings.</p>"
    head = [th("#"), th("claim"), th("ours"), th("holds"), th("why not, or what to know")]
    rows = [[td(i, i), td(inline(f.claim), raw=True), td(inline(f.ours), raw=True),
             td("yes" if f.holds else "no", cls="yes" if f.holds else "no"), td(inline(f.why), raw=True)]
            for i, f in enumerate(findings, 1)]
    return table(head, rows, cls="sortable findings")


def deviations_table(deviations: Sequence[Deviation]) -> str:
    if not deviations:
        return ""
    head = [th("what"), th("paper (text or reference code)"), th("ours"), th("why")]
    rows = [[td(inline(text), raw=True) for text in (d.what, d.paper, d.ours, d.why)] for d in deviations]
    return "<h2 id=\"deviations\">Deviations from the paper</h2>\n" + table(head, rows)


def provenance_list(meta: dict[str, Any], prov: dict[str, Any]) -> str:
    """The reproduction's command, commit, device, versions, budget, seeds and wall time, and what
    its records say about themselves."""
    command = (f"iclbench reproduce {meta['reproduction']} --budget {meta['budget']} "
               f"--seeds {','.join(map(str, meta['seeds']))}{execution_flags(meta)}")
    versions = ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items()))
    statuses = ", ".join(f"{n} {s}" for s, n in (prov.get("status") or {}).items())
    items = [f"command: <code>{esc(command)}</code>", f"git commit: <code>{esc(meta['git_commit'])}</code>",
             f"device: <code>{esc(meta['device'])}</code>", f"versions: {esc(versions)}",
             f"budget <code>{esc(meta['budget'])}</code>: {inline(budget_line(meta['budget_values']))}",
             f"seeds: {esc(', '.join(map(str, meta['seeds'])))}", f"wall time: {inline(wall_line(meta))}",
             f"records: {esc(prov.get('records', 0))} ({esc(statuses)}); their commits: "
             + (", ".join(f"<code>{esc(c)}</code>" for c in prov.get("commits") or []) or "unknown")
             + "; dtypes: " + esc(", ".join(map(str, prov.get("dtypes") or [])) or "unknown")]
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def learners_table(prov: dict[str, Any]) -> str:
    """Each learner's plugin, from the records."""
    learners = sorted((prov.get("learners") or {}).items())
    rows = [[td(name), td(plugin_text(info.get("plugin")))] for name, info in learners]
    return table([th("learner"), th("plugin")], rows) if rows else ""


def suites_list(suites: dict[str, str], plots: dict[str | None, list[str]]) -> str:
    items = [f"<li>{link(page, suite)} ({len(plots.get(suite, []))} plots)</li>" for suite, page in suites.items()]
    return "<ul>" + "".join(items) + "</ul>"


def published_subfolders(folder: Path) -> list[Path]:
    """The reproductions published inside `folder` (leaderboard/garg in leaderboard/): sub-folders
    holding reproduction.json and leaderboard.json. Write their sites before `folder`'s, so its
    index links to them."""
    return sorted(p.parent for p in folder.glob("*/reproduction.json") if (p.parent / "leaderboard.json").exists())


def sub_reproductions(folder: Path) -> str:
    """Links to the reproductions published in sub-folders: their site when it has been written,
    else their README.md."""
    items = []
    for sub in published_subfolders(folder):
        meta = json.loads((sub / "reproduction.json").read_text())
        target = f"{SITE}/index.html" if (sub / SITE / "index.html").exists() else "README.md"
        items.append(f"<li>{link(f'../{sub.name}/{target}', meta.get('reproduction', sub.name))} "
                     f"({esc(meta.get('budget', ''))} budget)</li>")
    return "<h2 id=\"reproductions\">Other reproductions</h2>\n<ul>" + "".join(items) + "</ul>" if items else ""


def files_list(folder: Path) -> str:
    items = [f"<li>{link('../' + name, name)}</li>" for name in FILES if (folder / name).exists()]
    return "<ul>" + "".join(items) + "</ul>"


def index_page(folder: Path, meta: dict[str, Any], prov: dict[str, Any], repro: Reproduction,
               pages: dict[str, str], plots: dict[str | None, list[str]]) -> str:
    """The reproduction's page: description, findings, deviations, provenance, and links to the
    suite pages, the other reproductions, the tables and the figures of no single suite."""
    spec = repro.spec()
    parts = [f"<h1>Reproduction <code>{esc(meta['reproduction'])}</code> ({esc(meta['budget'])} budget)</h1>",
             f"<p>{inline(spec.description)}</p>" if spec.description else "",
             "<h2 id=\"suites\">Suites</h2>", suites_list(pages, plots), sub_reproductions(folder),
             "<h2 id=\"findings\">Findings</h2>",
             "<p>Comparisons are paired: Δ is a learner's loss minus its reference's on the same tasks, mean over "
             "seeds ± 95 % CI, then relative to the reference's loss. Tolerances are fixed in the claim.</p>",
             findings_table(repro.findings(Results(folder))), deviations_table(spec.deviations),
             "<h2 id=\"provenance\">Provenance</h2>", provenance_list(meta, prov), learners_table(prov),
             "<h2 id=\"files\">Tables and records</h2>", files_list(folder)]
    if plots.get(None):
        parts += ["<h2 id=\"figures\">Other figures</h2>", figures(plots[None])]
    return "\n".join(p for p in parts if p)
