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


def title_height(fig) -> float:
    """The share of the figure's height its title (`suptitle`) takes, so the panels are laid out
    below it rather than under it."""
    title = getattr(fig, "_suptitle", None)
    if title is None or not title.get_text():
        return 0.0
    lines = title.get_text().count("\n") + 1
    return min(0.3, lines * title.get_fontsize() * 1.45 / 72 / fig.get_figheight())


def save(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out (the panels below the figure's title), write without a software stamp (the same
    records give the same file), close. The saved area grows to hold what sits outside the axes
    (a figure legend beside them). The file
    is written under a temporary name and renamed into place (`outputs.write_file`: inside a
    staged render, once the whole render has succeeded), so no reader sees half a PNG."""
    import matplotlib.pyplot as plt

    path = Path(path)
    form = path.suffix.lstrip(".").lower() or "png"  # the temporary name's suffix says nothing

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=form, dpi=dpi, metadata={"Software": None}, bbox_inches="tight")

    try:
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - title_height(fig)))
        write_file(path, write)
    finally:
        plt.close(fig)
    return path


def styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """Each learner's look in one figure, as matplotlib keyword arguments: the same learner looks
    the same in every figure, no two share a look within one (`iclbench.styles`)."""
    from iclbench.styles import styles as learner_styles

    return learner_styles(names)


LEGEND_SIZE = 7.5  # points: the smallest legend text, readable at the site's width
INSIDE = 6  # a legend of more entries goes beside the axes, where it hides no curve


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
        handles, _ = ax.get_legend_handles_labels()
        outside = {"loc": "center left", "bbox_to_anchor": (1.01, 0.5)} if len(handles) > INSIDE else {}
        ax.legend(fontsize=max(size - 1, LEGEND_SIZE), **outside)


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
