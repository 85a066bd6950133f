"""Data in the Markdown and CSV files iclbench writes, escaped so it stays data.

Labels, suite and task names, references and error messages come from records, which anyone
can write. In Markdown a `|` in a label would shift a table's columns, a newline split its row,
and HTML or a link pass straight into leaderboard.md or README.md; in a CSV opened in a
spreadsheet a cell starting with `=` is a formula. Ordinary names (`gd[steps=2]`,
`lsa[layers=5,clip=10]`, `lsa[train.batch_size=64]`) come out unchanged, so re-rendered
published tables stay byte for byte the same. Escape the data, never the markup iclbench
writes around it (a footer's `<br>`, a finding's `code`).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

LINE_BREAK = re.compile(r"\r\n|\r|\n")
MARKDOWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "&#96;", "\\": "\\\\", "|": "\\|"})
TAG = re.compile(r"<(?=[A-Za-z/!?])")  # where HTML would start a tag, comment or declaration
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as a formula's start
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


def one_line(text: Any) -> str:
    """`text` with each line break made a space: a newline would end a table row or a heading."""
    return LINE_BREAK.sub(" ", str(text))


def md_text(text: Any) -> str:
    """Plain text from data for Markdown, a table cell or prose: on one line, `|` and `\\` escaped
    with a backslash, `&`, `<`, `>` and backticks as HTML entities (no tag, no code span), and
    `](` broken so no link or image forms; reads as the text itself once rendered."""
    return one_line(text).translate(MARKDOWN).replace("](", "]\\(")


def md_code(text: Any) -> str:
    """Data as a Markdown code span (`` `gd` ``): on one line, fenced by one backtick more than the
    longest run of backticks inside, so the data can neither close the span nor hold markup."""
    body = one_line(text)
    if not body:
        return "` `"  # two backticks alone would open a span, not hold an empty one
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body[:1] in ("`", " ") or body[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def md_cell(text: Any) -> str:
    """A table cell of iclbench's own prose that may quote data (a finding, a deviation): its
    `code` and **bold** kept, but on one line, with every unescaped `|` escaped and no HTML tag
    (`<` before a letter becomes `&lt;`; `x < 1e-4` and `->` stay as they are)."""
    return TAG.sub("&lt;", UNESCAPED_PIPE.sub(r"\\|", one_line(text)))


def md_tree(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string, keys too, `md_text`-escaped."""
    if isinstance(value, str):
        return md_text(value)
    if isinstance(value, dict):
        return {md_tree(k): md_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [md_tree(v) for v in value]
    return value


def md_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A table's header and cells, `md_text`-escaped, ready for `DataFrame.to_markdown`."""
    rows = [[md_text(v) if isinstance(v, str) else v for v in row] for row in frame.itertuples(index=False)]
    return pd.DataFrame(rows, columns=[md_text(c) for c in frame.columns])


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run: a text cell starting with `=`, `+`, `-`, `@`, a
    tab or a carriage return gets a leading `'`; numbers (`-0.5`, `-inf`) and other values stay."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `csv_cell` applied to its text and mixed columns (numeric ones are never formulas)."""
    out = frame.copy()
    for name in out.columns:
        if not pd.api.types.is_numeric_dtype(out[name]):
            out[name] = out[name].map(csv_cell)
    return out
