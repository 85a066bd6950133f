"""The HTML building blocks of the static site (`site`): the page frame with its inline style and
sort script, escaped text, links, cells and tables.

Everything here escapes what it is given (`esc`), so data from the records and the publisher's
prose stay text; a page carries its style and script inline and links its images where they
are, so the site works opened from the file system, with nothing fetched from elsewhere.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

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


def figures(paths: Sequence[str]) -> str:
    """Each plot in place, linked relative to the site folder, never copied."""
    return "\n".join(f'<figure><a href="{href("../" + p)}"><img src="{href("../" + p)}" alt="{esc(Path(p).stem)}" '
                     f'loading="lazy"></a><figcaption>{esc(p)}</figcaption></figure>' for p in paths)
