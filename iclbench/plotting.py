"""Figure helpers shared by the leaderboard, publication and analyses: headless, reproducible PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from iclbench.outputs import write_file


def subplots(*args: Any, **kwargs: Any):
    """`plt.subplots` on the headless Agg backend (imported lazily: plotting is never on a hot path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out, write without a software stamp (the same records give the same file), close. The
    saved area grows to hold what sits outside the axes (a figure legend beside them). The file
    is written under a temporary name and renamed into place (`outputs.write_file`: inside a
    staged render, once the whole render has succeeded), so no reader sees half a PNG."""
    import matplotlib.pyplot as plt

    path = Path(path)
    form = path.suffix.lstrip(".").lower() or "png"  # the temporary name's suffix says nothing

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=form, dpi=dpi, metadata={"Software": None}, bbox_inches="tight")

    try:
        fig.tight_layout()
        write_file(path, write)
    finally:
        plt.close(fig)
    return path


MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">"]
LINESTYLES = ["-", "--", "-.", ":"]


def styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct colour, marker and line style per name, in the order given (pass one fixed order,
    and a learner looks the same in every figure); every other marker hollow, so a learner drawn
    exactly on another one still shows."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {name: {"color": colors[i % 10], "marker": MARKERS[i % len(MARKERS)], "ls": LINESTYLES[i % len(LINESTYLES)],
                   "ms": 5 if i % 2 else 4, "mfc": "none" if i % 2 else colors[i % 10], "lw": 1.3}
            for i, name in enumerate(names)}


def decorate(ax, xlabel: str, ylabel: str, title: str, *, log: bool = False, size: int = 8, legend: bool = True) -> None:
    """The axes' labels, title, grid and (unless `legend` is false) legend, in the house style."""
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=size)
    ax.set_title(title, fontsize=size + 1)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=size - 1)


def plain_log_ticks(axis) -> None:
    """Label a log axis's ticks as plain numbers (0.3, not 3 x 10^-1); which ticks get a label is
    matplotlib's choice, so a narrow range still shows its minor ticks."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))


def prune_stale(folder: str | Path, written: Iterable[str | Path]) -> list[Path]:
    """Delete the top-level PNGs in `folder` that are not in `written`, so a plot whose records are
    gone (a dropped learner, suite or shift) does not linger beside the new ones; subfolders (an
    analysis's figures/) are left alone. Returns the paths deleted. It deletes PNGs iclbench may
    not have written: renders prune with `outputs.prune`, which deletes only their manifest's."""
    keep = {Path(p).resolve() for p in written}
    removed = []
    for path in sorted(Path(folder).glob("*.png")):
        if path.resolve() not in keep and (path.is_file() or path.is_symlink()):
            path.unlink()
            removed.append(path)
    return removed
