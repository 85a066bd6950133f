"""One look per learner in every figure: colour, marker, line style, hollow or filled marker.

The paper's reference learners keep fixed looks (GD black, solid, circles; GD++ red, dashed,
squares; least squares blue, dotted, diamonds; the zero predictor grey, dash-dot, crosses), and
their variants (`gd[steps=3]`) keep the family's colour with another marker and line. Every
other learner takes the look its name hashes to, from colours no reference uses: the same in
every run, and in every figure of every reproduction where no learner placed before it took
that colour.

Within one figure no two learners share a look (colour, line style and marker together), and
while colours last no two share a colour: learners are placed references first, then by name,
and one whose colour is already taken takes the next free one (a variant of a reference keeps
its family's colour and changes line and marker). Hollow and filled markers alternate by name,
so two learners drawn exactly on top of each other both show.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable

FAMILIES = {  # base name -> (colour, marker, line style): the paper's reference learners
    "gd": ("black", "o", "-"),
    "gd++": ("tab:red", "s", "--"),
    "least-squares": ("tab:blue", "D", ":"),
    "zero": ("0.5", "X", "-."),
}
PALETTE = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
           "#393b79", "#637939", "#7b4173")  # none of the references' colours (indigo, dark olive, plum last)
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class Look:
    color: str
    marker: str
    ls: str
    filled: bool

    @property
    def key(self) -> tuple[str, str, str]:
        """What must differ between two learners of one figure."""
        return self.color, self.ls, self.marker

    def kwargs(self) -> dict[str, Any]:
        """matplotlib keyword arguments for `plot` / `errorbar`."""
        return {"color": self.color, "marker": self.marker, "ls": self.ls, "ms": 4 if self.filled else 5,
                "mfc": self.color if self.filled else "none", "lw": 1.3}


def family(name: str) -> str | None:
    """The reference family of a learner name (`gd++[steps=2]` -> gd++), or None."""
    base = name.split("[", 1)[0]
    return base if base in FAMILIES else None


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def candidates(name: str) -> list[Look]:
    """`name`'s looks in order of preference: its own first, then the others it may take."""
    h, fam = _hash(name), family(name)
    filled = bool(h & 1)
    if fam is not None:
        color, marker, ls = FAMILIES[fam]
        if name == fam:
            return [Look(color, marker, ls, True)]
        pairs = [(m, s) for s in LINESTYLES for m in MARKERS if (m, s) != (marker, ls)]
        start = h % len(pairs)
        return [Look(color, m, s, filled) for m, s in pairs[start:] + pairs[:start]]
    combos = [(c, s) for c in PALETTE for s in LINESTYLES]  # colour and line first, then the marker
    start = h % len(combos)
    marker = MARKERS[(h // len(combos)) % len(MARKERS)]
    first = [Look(c, marker, s, filled) for c, s in combos[start:] + combos[:start]]
    rest = [Look(c, m, s, filled) for c, s in combos for m in MARKERS if m != marker]
    return first + rest


def looks(names: Iterable[str]) -> dict[str, Look]:
    """Each name's look for one figure: its own unless taken there (see the module docstring)."""
    names = list(dict.fromkeys(names))
    order = sorted(names, key=lambda n: (family(n) != n, family(n) is None, n))  # references, variants, the rest
    taken: set[tuple[str, str, str]] = set()
    colors: set[str] = set()
    out: dict[str, Look] = {}
    for name in order:
        options = candidates(name)
        free = [o for o in options if o.key not in taken]
        apart = [o for o in free if o.color not in colors] if family(name) is None else []
        look = (apart or free or options)[0]
        out[name] = look
        taken.add(look.key)
        colors.add(look.color)
    return {name: out[name] for name in names}


def styles(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """name -> matplotlib keyword arguments, for one figure (`looks`)."""
    return {name: look.kwargs() for name, look in looks(names).items()}
