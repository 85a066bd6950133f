"""Figure helpers shared by the leaderboard, publication and analyses: headless, reproducible PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
