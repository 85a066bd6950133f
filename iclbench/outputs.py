"""How a render (the leaderboard, a publication, a site) writes its files and cleans up after itself.

Every file reaches its name by an atomic rename of a temporary file beside it (`locks.unique_tmp`),
so a reader never sees half of one. Inside `staged()` the renames wait until the whole block has
succeeded: a render that fails part-way (disk full, a plot that raises) leaves the previous
complete set of files, not a new leaderboard.md beside an older csv and json.

A render that owns its folder records the files it wrote in a manifest (MANIFEST). The next
render of the same writer deletes only plots that the manifest lists and it no longer writes:
never a file iclbench did not write (a user's `holiday.png`, a publication's figures), and
nothing at all in a folder without a manifest. Tables of a format not asked for this time stay,
as they always have.
"""

from __future__ import annotations

import contextlib
import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterable, Iterator

from iclbench.filenames import confined
from iclbench.locks import atomic_write, unique_tmp

MANIFEST = ".iclbench-manifest.json"
PRUNED = (".png",)  # what a render prunes: its plots, the files that come and go with the records

Writer = Callable[[Path], None]  # writes the whole file at the path it is given


class Stage:
    """Files written to temporary names, renamed onto their own names by `commit`."""

    def __init__(self) -> None:
        self.pending: dict[Path, Path] = {}  # final path -> its written temporary file

    def write(self, path: Path, write: Writer) -> None:
        """Write `path`'s content to a temporary file beside it; a second write of the same path replaces the first."""
        tmp = unique_tmp(path)
        try:
            write(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        earlier = self.pending.pop(path, None)
        if earlier is not None:
            earlier.unlink(missing_ok=True)
        self.pending[path] = tmp

    def commit(self) -> None:
        """Rename every written file into place, in the order written; leftovers are removed if a rename fails."""
        try:
            for path, tmp in self.pending.items():
                os.replace(tmp, path)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary files not renamed into place."""
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()


_STAGE: ContextVar[Stage | None] = ContextVar("iclbench_output_stage", default=None)


@contextlib.contextmanager
def staged() -> Iterator[Stage]:
    """Hold back the renames of every `write_file` in the block until it ends without an error;
    on an error none happens and the temporary files are removed. A block inside another joins
    it (a publication's leaderboard is committed with the rest of the publication)."""
    outer = _STAGE.get()
    if outer is not None:
        yield outer
        return
    stage = Stage()
    token = _STAGE.set(stage)
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    finally:
        _STAGE.reset(token)
    stage.commit()


def write_file(path: str | Path, write: Writer) -> Path:
    """Write `path` through a temporary file beside it, renamed into place at once, or when the
    enclosing `staged()` block ends; returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = _STAGE.get()
    if stage is None:
        atomic_write(path, write)
    else:
        stage.write(path, write)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """`write_file` of UTF-8 text."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def owned(folder: str | Path, writer: str) -> set[str]:
    """The names in `folder`'s manifest when `writer` wrote it: what that writer's earlier render
    left there. Empty without a manifest, with another writer's, or with one that does not
    parse: what is unknown is never deleted."""
    try:
        doc = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict) or doc.get("writer") != writer or not isinstance(doc.get("files"), list):
        return set()
    return {name for name in doc["files"] if isinstance(name, str)}


def top_level_names(folder: str | Path, written: Iterable[str | Path]) -> list[str]:
    """The names of the `written` files that lie directly in `folder`, sorted and distinct."""
    here = Path(folder).resolve()
    return sorted({Path(p).name for p in written if Path(p).parent.resolve() == here})


def write_manifest(folder: str | Path, writer: str, written: Iterable[str | Path]) -> Path:
    """Record the files of `written` that lie directly in `folder` as `writer`'s (no timestamp:
    the same render writes the same manifest)."""
    doc = {"writer": writer, "files": [n for n in top_level_names(folder, written) if n != MANIFEST]}
    return write_text(Path(folder) / MANIFEST, json.dumps(doc, indent=1) + "\n")


def prune(folder: str | Path, previous: Iterable[str], written: Iterable[str | Path],
          suffixes: tuple[str, ...] = PRUNED) -> list[Path]:
    """Delete the files named in `previous` (an earlier manifest's names) with one of `suffixes`
    that this render did not write: stale plots of a dropped learner, suite or shift. A name that
    is not a plain entry of `folder` (`../x`, `/etc/x`, from a crafted manifest) and anything but a
    file or link are left alone. Returns the paths deleted."""
    keep = set(top_level_names(folder, written)) | {MANIFEST}
    removed = []
    for name in sorted(n for n in set(previous) - keep if n.endswith(suffixes)):
        try:
            path = confined(folder, name)
        except ValueError:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed.append(path)
    return removed
