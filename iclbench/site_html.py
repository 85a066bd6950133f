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
.scroll { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td[data-sort] { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f3f3f3; }
th button { font: inherit; font-weight: bold; background: none; border: 0; padding: 0; cursor: pointer; text-align: left; color: inherit; }
th button:focus-visible { outline: 2px solid #1a5fb4; outline-offset: 2px; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
td.no { color: #b00020; font-weight: bold; }
td.best { font-weight: bold; background: #e6f4ea; }
td.tied { background: #eef4fb; }
td.heavy { color: #8a4b00; }
.pair { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.pair > div:first-child { flex: 0 1 auto; max-width: 100%; min-width: 0; }
.pair > div + div { flex: 1 1 26em; min-width: 0; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.2em; overflow-wrap: anywhere; }
details > summary { cursor: pointer; margin: 0.4em 0; }
"""

# Click (or press Enter / Space on) a header's button to sort its table; numbers sort by the
# cell's data-sort value, cells without one (blank, diverged, failed) stay last in either direction.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th button").forEach(function (button) {
  button.addEventListener("click", function () {
    var th = button.closest("th"), table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
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
    """A relative link, percent-encoded for the URL (its `#fragment` kept) and escaped for the attribute."""
    base, sep, fragment = path.partition("#")
    return esc(quote(base) + sep + quote(fragment))


def link(path: str, text: str) -> str:
    return f'<a href="{href(path)}">{esc(text)}</a>'


def td(text: Any, sort: float | None = None, cls: str = "", raw: bool = False, style: str = "") -> str:
    """A cell; `sort`, a number the sort script orders by; `raw`: `text` is HTML already escaped;
    `style`, an inline style of iclbench's own (a pivot cell's colour)."""
    attrs = (f' data-sort="{float(sort)!r}"' if sort is not None else "") + (f' class="{cls}"' if cls else "") \
        + (f' style="{esc(style)}"' if style else "")
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def th(text: str, metric: str = "") -> str:
    attrs = f' data-metric="{esc(metric)}"' if metric else ""
    return f'<th scope="col"{attrs}><button type="button" title="sort by this column">{esc(text)}</button></th>'


def table(head: list[str], rows: list[list[str]], cls: str = "sortable") -> str:
    body = "\n".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="{cls}">\n<thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n{body}\n'
            '</tbody>\n</table></div>')


def figures(paths: Sequence[str]) -> str:
    """Each plot in place, linked relative to the site folder, never copied."""
    return "\n".join(f'<figure><a href="{href("../" + p)}"><img src="{href("../" + p)}" alt="{esc(Path(p).stem)}" '
                     f'loading="lazy"></a><figcaption>{esc(p)}</figcaption></figure>' for p in paths)
