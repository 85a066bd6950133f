"""Figure helpers shared by the leaderboard, publication and analyses: headless, reproducible PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable


def subplots(*args: Any, **kwargs: Any):
    """`plt.subplots` on the headless Agg backend (imported lazily: plotting is never on a hot path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out, write without a software stamp (the same records give the same file), close."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return path


def decorate(ax, xlabel: str, ylabel: str, title: str, *, log: bool = False, size: int = 8) -> None:
    """The axes' labels, title, grid and legend, in the house style."""
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=size)
    ax.set_title(title, fontsize=size + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=size - 1)


def prune_stale(folder: str | Path, written: Iterable[str | Path]) -> list[Path]:
    """Delete the top-level PNGs in `folder` that are not in `written`, so a plot whose records are
    gone (a dropped learner, suite or shift) does not linger beside the new ones; subfolders (an
    analysis's figures/) are left alone. Returns the paths deleted."""
    keep = {Path(p).resolve() for p in written}
    removed = []
    for path in sorted(Path(folder).glob("*.png")):
        if path.resolve() not in keep and (path.is_file() or path.is_symlink()):
            path.unlink()
            removed.append(path)
    return removed
