"""A static HTML site of a published reproduction folder (`iclbench publish --html`).

`write_site(folder)` reads what `publish` wrote there (leaderboard.json, the PNG plots,
reproduction.json) and the reproduction's findings, and writes `folder/site/`: index.html (the
description, the findings, provenance, links) and one page per suite with sortable tables and
that suite's plots. Pages link the PNGs where they are (`../name.png`) and carry their own small
script, so the site works opened from the file system: no server, no network, no copies.
The pages hold no timestamp: the same folder gives the same site, byte for byte.

This module assembles the pages; their HTML building blocks are `site_html`'s, a suite page's
tables `site_tables`' (column headers and ranking from the metric registry).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from iclbench import ranking, report_text
from iclbench.filenames import safe_stem
from iclbench.outputs import write_text
from iclbench.provenance import plugin_text
from iclbench.merge import resolve_conflicts
from iclbench.publish import budget_line, display_records, execution_flags, wall_line
from iclbench.ranking import TEST_NOTE, headline_metric
from iclbench.reproduce import Deviation, Finding, Reproduction, Results
from iclbench.verdicts import label
from iclbench.site_html import esc, figures, inline, link, page, table, td, th
from iclbench.site_summary import SCALE_NOTE, column_standings, direction, pivot_table, standings_table
from iclbench.site_tables import Column, ci_note, column_title, comparisons_table, contents, hyperparameter_table, \
    scores_table, suite_columns

SITE = "site"
FILES = ["README.md", "leaderboard.md", "leaderboard.csv", "leaderboard.json", "results.jsonl", "analyses.jsonl"]


def write_site(folder: Path, repro: Reproduction | None = None) -> list[Path]:
    """Write `folder/site/` (index.html and `<suite>.html` per suite) from the published files in
    `folder`; returns the pages written and deletes other pages left in site/ by an earlier call.

    `repro` gives the findings, the description and the deviations, from the same records the
    README's findings come from; without it, the installed reproduction named in reproduction.json."""
    folder = Path(folder)
    meta = json.loads((folder / "reproduction.json").read_text())
    repro = repro or installed_reproduction(meta["reproduction"])
    records = display_records(Results(folder))

    def index(board: dict[str, Any], names: dict[str, str], plots: dict[str | None, list[str]], summary: str) -> str:
        return index_page(folder, meta, board["provenance"], repro, names, plots, summary)

    return write_pages(folder, records, f"Reproduction {meta['reproduction']}", f": {meta['reproduction']}", index)


def write_results_site(folder: Path, records: list[dict[str, Any]]) -> list[Path]:
    """The site of a plain leaderboard folder (`iclbench leaderboard --format html`): the summary,
    the suites and the tables, from leaderboard.json and the `records` it was rendered from."""
    folder = Path(folder)

    def index(board: dict[str, Any], names: dict[str, str], plots: dict[str | None, list[str]], summary: str) -> str:
        parts = ["<h1>Leaderboard</h1>", "<h2 id=\"suites\">Suites</h2>", suites_list(names, plots), summary,
                 "<h2 id=\"provenance\">Provenance</h2>", learners_table(board["provenance"]),
                 "<h2 id=\"files\">Tables and records</h2>", files_list(folder)]
        if plots.get(None):
            parts += ["<h2 id=\"figures\">Other figures</h2>", figures(plots[None])]
        return "\n".join(p for p in parts if p)

    return write_pages(folder, records, "Leaderboard", "", index)


def write_pages(folder: Path, records: list[dict[str, Any]], title: str, suffix: str, index) -> list[Path]:
    """The suite pages and the index (`index(board, page names, plots, summary html)`) of `folder`'s site."""
    board = json.loads((folder / "leaderboard.json").read_text())
    records, _ = resolve_conflicts(records)
    site = folder / SITE
    site.mkdir(exist_ok=True)
    suites = suite_columns(board["rows"])
    names = page_names(list(suites))
    plots = plots_by_suite(folder, list(suites))
    by_column = ranking.columns(records)
    written = []
    for suite, columns in suites.items():
        body = suite_page(suite, columns, plots.get(suite, []), board["provenance"], by_column, folder)
        written.append(write(site / names[suite], f"{suite}{suffix}", body))
    written.insert(0, write(site / "index.html", title, index(board, names, plots, landing_summary(by_column, names, folder))))
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


def suite_page(suite: str, columns: list[Column], plots: list[str], prov: dict[str, Any],
               by_column: dict[tuple[str, str, str], list[dict[str, Any]]], folder: Path) -> str:
    """A suite's page: who is best in distribution, a learner x shift pivot per OOD group with its
    figure beside it, then every column's full tables (folded), the tuned hyperparameters and the
    suite's other plots."""
    groups = list(dict.fromkeys(c.group for c in columns if c.group))
    beside = {g: group_figure(suite, g) for g in groups if group_figure(suite, g) in plots}
    rest = [p for p in plots if p not in beside.values()]
    parts = [f'<p><a href="index.html">← back</a></p>\n<h1>Suite <code>{esc(suite)}</code></h1>',
             contents(columns, bool(rest))]
    home = [c for c in columns if not c.group]
    order: list[str] = []  # the learners in the first in-distribution column's ranking: the pivots' rows
    if home:
        parts.append('<h2 id="best">Who is best</h2>')
        for column in home:
            records = by_column.get((suite, column.group, column.task), [])
            name, rows = column_standings(records, folder)
            parts += [f"<h3>{esc(column_title(column))}</h3>", standings_table(rows, name)]
            order = order or [s.learner for s in rows]
        parts.append(f"<p>{esc(TEST_NOTE)}</p>")
    if groups:
        parts.append(f'<h2 id="shifts">Out of distribution</h2>\n<p>{esc(SCALE_NOTE)}</p>')
    for i, group in enumerate(groups):
        records = [r for key, rs in by_column.items() if key[:2] == (suite, group) for r in rs]
        name = headline_metric(records)
        learners = order + sorted({r["label"] for r in records} - set(order))
        parts += [f'<h3 id="group-{i}">{esc(group)}: {esc(direction(name))}</h3>',
                  f'<div class="pair"><div>{pivot_table(records, learners, name)}</div>'
                  + (f"<div>{figures([beside[group]])}</div>" if group in beside else "") + "</div>"]
    parts += ['<h2 id="columns">Every column</h2>',
              f"<p>Cells: mean ± {esc(ci_note(columns))}; <em>seeds</em>: seeds behind the row, <em>tasks</em>: "
              "evaluation tasks per seed. Headers sort their table (click, or Enter on a focused header).</p>"]
    for i, column in enumerate(columns):
        parts += [f'<details id="column-{i}"><summary>{esc(column_title(column))}</summary>',
                  f"<h2>{esc(column_title(column))}</h2>", scores_table(column), comparisons_table(column), "</details>"]
    parts.append(hyperparameter_table(suite, prov))
    if rest:
        parts += ['<h2 id="plots">Plots</h2>', figures(rest)]
    return "\n".join(p for p in parts if p)


def group_figure(suite: str, group: str) -> str:
    """The file name of a shift group's figure (`shift_plots.plot_group`'s)."""
    return safe_stem(f"{suite}-{group.replace(' ', '-')}") + ".png"


SUMMARY_ROWS = 10  # the landing summary shows each column's first this many rows, and any tied further down


def landing_summary(by_column: dict[tuple[str, str, str], list[dict[str, Any]]], pages: dict[str, str],
                    folder: Path) -> str:
    """Per suite, its in-distribution column's leaders: the first `SUMMARY_ROWS` and every learner
    tied with the best further down, with their ranks and a link to the full ranking."""
    parts = ['<h2 id="summary">Who is best</h2>']
    for (suite, group, task), records in by_column.items():
        if group or suite not in pages:
            continue
        name, rows = column_standings(records, folder)
        kept = [s for i, s in enumerate(rows) if i < SUMMARY_ROWS or s.best or s.tied]
        more = (f" ({len(rows) - len(kept)} more on {link(pages[suite] + '#best', suite)}'s page)"
                if len(rows) > len(kept) else f" ({link(pages[suite], 'suite page')})")
        parts += [f"<h3><code>{esc(suite)}</code>, in distribution: {esc(task)}</h3>",
                  standings_table(kept, name, [rows.index(s) + 1 for s in kept]),
                  f"<p>{esc(len(rows))} learners{more}</p>"]
    if len(parts) == 1:
        return ""
    return "\n".join(parts + [f"<p>{esc(TEST_NOTE)}</p>"])


def findings_table(findings: Sequence[Finding]) -> str:
    """The paper's claims, ours, yes / no, and why: the README's findings table."""
    if not findings:
        return f"<p>{report_text.NO_FINDINGS}</p>"
    head = [th(h) for h in report_text.FINDINGS_HEAD]
    rows = [[td(i, i), td(inline(claim), raw=True), td(inline(ours), raw=True),
             td(label(holds), cls={True: "yes", False: "no", None: "maybe"}[holds]), td(inline(why), raw=True)]
            for i, claim, ours, holds, why in report_text.finding_rows(findings)]
    return table(head, rows, cls="sortable findings")


def deviations_table(deviations: Sequence[Deviation]) -> str:
    if not deviations:
        return ""
    head = [th(h) for h in report_text.DEVIATIONS_HEAD]
    rows = [[td(inline(text), raw=True) for text in row] for row in report_text.deviation_rows(deviations)]
    return f"<h2 id=\"deviations\">{report_text.DEVIATIONS_TITLE}</h2>\n" + table(head, rows)


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
    items = [reproduction_item(sub, f"../{sub.name}/") for sub in published_subfolders(folder)]
    return reproductions_list(items)


def reproduction_item(where: Path, href: str) -> str:
    """A link to the reproduction published in `where` (its site when written, else its README),
    `href` the way from this site to that folder, with its budget."""
    meta = json.loads((where / "reproduction.json").read_text())
    target = f"{SITE}/index.html" if (where / SITE / "index.html").exists() else "README.md"
    return f"<li>{link(href + target, meta.get('reproduction', where.name))} ({esc(meta.get('budget', ''))} budget)</li>"


def reproductions_list(items: list[str]) -> str:
    return "<h2 id=\"reproductions\">Other reproductions</h2>\n<ul>" + "".join(items) + "</ul>" if items else ""


def parent_reproductions(folder: Path) -> str:
    """For a reproduction published inside another's folder (`leaderboard/garg`): links back to
    that one's site and to the other reproductions beside it."""
    folder = folder.resolve()
    parent = folder.parent
    if not (parent / "reproduction.json").exists():
        return ""
    siblings = [sub for sub in published_subfolders(parent) if sub.resolve() != folder]
    return reproductions_list([reproduction_item(parent, "../../")] +
                              [reproduction_item(sub, f"../../{sub.name}/") for sub in siblings])


def files_list(folder: Path) -> str:
    items = [f"<li>{link('../' + name, name)}</li>" for name in FILES if (folder / name).exists()]
    return "<ul>" + "".join(items) + "</ul>"


def index_page(folder: Path, meta: dict[str, Any], prov: dict[str, Any], repro: Reproduction,
               pages: dict[str, str], plots: dict[str | None, list[str]], summary: str = "") -> str:
    """The reproduction's page: description, findings, deviations, provenance, and links to the
    suite pages, the other reproductions, the tables and the figures of no single suite."""
    spec = repro.spec()
    parts = [f"<h1>Reproduction <code>{esc(meta['reproduction'])}</code> ({esc(meta['budget'])} budget)</h1>",
             f"<p>{inline(spec.description)}</p>" if spec.description else "",
             "<h2 id=\"suites\">Suites</h2>", suites_list(pages, plots),
             sub_reproductions(folder) or parent_reproductions(folder), summary,
             "<h2 id=\"findings\">Findings</h2>",
             f"<p>{esc(report_text.PAIRED_NOTE)} {esc(report_text.VERDICT_NOTE)}</p>",
             findings_table(repro.findings(Results(folder))), deviations_table(spec.deviations),
             "<h2 id=\"provenance\">Provenance</h2>", provenance_list(meta, prov), learners_table(prov),
             "<h2 id=\"files\">Tables and records</h2>", files_list(folder)]
    if plots.get(None):
        parts += ["<h2 id=\"figures\">Other figures</h2>", figures(plots[None])]
    return "\n".join(p for p in parts if p)
