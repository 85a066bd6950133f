"""Safe file names for names taken from data (suite, column, group, learner labels).

A suite named `../../x` or `/abs/x`, or a crafted published folder, must never make iclbench
write outside the folder it renders into. Every output file whose name comes from data goes
through `safe_stem` (the characters a file name may hold) and `confined` (the file lies directly
in its folder), here and nowhere else. Names made of letters, digits, `.`, `_` and `-` (every
published name) come out unchanged, so re-rendered folders keep their file names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # a run of anything else becomes one `_`
MAX_STEM = 200  # with any suffix iclbench adds, well under the 255 bytes a file name may take
DIGEST = 12  # hex digits of the full name's hash that keep shortened names apart


def safe_stem(name: object, fallback: str = "file", strip: str = ".") -> str:
    """`name` as a file-name stem: runs of characters other than letters, digits, `.`, `_` and
    `-` replaced by `_`, `strip` characters removed from both ends (so never `.`, `..` or a
    hidden file), `fallback` when nothing is left; a stem over MAX_STEM characters is cut and
    ends in a hash of the whole name, so two long names stay two files."""
    stem = UNSAFE.sub("_", str(name)).strip(strip)
    if not stem:
        return fallback
    if len(stem) > MAX_STEM:
        digest = hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST]
        stem = f"{stem[:MAX_STEM - DIGEST - 1]}-{digest}"
    return stem


def confined(folder: str | Path, name: str) -> Path:
    """`folder / name`, refusing a `name` that is not one plain entry of `folder` (a path
    separator, `.`, `..`, a NUL), so nothing derived from it can land elsewhere."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"file name {name!r} is not a plain name inside {str(folder)!r}")
    return Path(folder) / name


def safe_path(folder: str | Path, name: object, suffix: str = "", fallback: str = "file") -> Path:
    """The file `<safe_stem(name)><suffix>` directly inside `folder`: how every data-derived output
    file is named (`suffix` is iclbench's own text, `-error-vs-context.png`)."""
    return confined(folder, safe_stem(name, fallback) + suffix)
