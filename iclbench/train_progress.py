"""A training's progress, shown wherever its log goes.

On a terminal: a tqdm bar. Anywhere else (a file, a CI log, a `--jobs` worker whose stderr is
the driver's): plain lines, one per held-out evaluation at most every `ICLBENCH_PROGRESS_SECONDS`
(default 30) seconds, each with the step, the held-out loss, the time so far and the time left.
Either way a training says where it starts ("resumed at step N of M", "loaded from cache") and
ends with one line: its steps, time and held-out loss. `ICLBENCH_PROGRESS=off`, or `--quiet`
(`silenced`), silences both.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, TextIO

from tqdm.auto import tqdm

DEFAULT_SECONDS = 30.0
_WHAT: ContextVar[str] = ContextVar("training_what", default="")
_SILENT: ContextVar[bool] = ContextVar("training_silent", default=False)


@contextmanager
def silenced(on: bool = True) -> Iterator[None]:
    """Within this block (`--quiet`), trainings show no bar and print no lines."""
    token = _SILENT.set(on)
    try:
        yield
    finally:
        _SILENT.reset(token)


@contextmanager
def training_of(what: str) -> Iterator[None]:
    """Within this block, progress lines name the training's task and seed (`what`) beside the
    learner's label, so two trainings running side by side read apart."""
    token = _WHAT.set(what)
    try:
        yield
    finally:
        _WHAT.reset(token)


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `2 h 10 min`: a time a reader takes in at a glance."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def line_interval() -> float:
    """Seconds between two plain progress lines (`ICLBENCH_PROGRESS_SECONDS`)."""
    try:
        return max(0.0, float(os.environ.get("ICLBENCH_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


class TrainProgress:
    """Progress of one training from `initial` to `total` steps, as a bar or as lines;
    `bar=False` for a training that only says one thing (loaded from the cache): no bar is drawn."""

    def __init__(self, total: int, desc: str, initial: int = 0, stream: TextIO | None = None,
                 bar: bool = True) -> None:
        what = _WHAT.get()
        self.total, self.desc, self.initial = total, f"{desc} ({what})" if what else desc, initial
        self.stream = stream or sys.stderr
        off = _SILENT.get() or os.environ.get("ICLBENCH_PROGRESS", "").lower() in ("off", "0", "no")
        terminal = getattr(self.stream, "isatty", lambda: False)() and not os.environ.get("TQDM_DISABLE")
        self.mode = "off" if off else ("bar" if terminal else "lines")
        self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                        file=self.stream) if self.mode == "bar" and bar else None
        self.step = initial
        self.start = time.perf_counter()
        self.last_line = -float("inf")
        self.interval = line_interval()

    def say(self, message: str) -> None:
        """One line about this training, above the bar if there is one."""
        if self.mode == "off":
            return
        text = f"{self.desc}: {message}"
        if self.bar is not None:
            tqdm.write(text, file=self.stream)
        else:  # one write for the whole line: worker processes share the stream, and a line written
            self.stream.write(text + "\n")  # in two parts (text, then the newline) can take another's
            self.stream.flush()  # line into it between them

    def update(self, n: int = 1) -> None:
        self.step += n
        if self.bar is not None:
            self.bar.update(n)

    def held_out(self, losses: list[float]) -> None:
        """A held-out evaluation at the current step: the bar's postfix, or a line when due."""
        shown = " ".join(f"{x:.4g}" for x in losses)
        if self.bar is not None:
            self.bar.set_postfix(held_out=shown)
            return
        now = time.perf_counter()
        if self.mode != "lines" or (now - self.last_line < self.interval and self.step < self.total):
            return
        self.last_line = now
        elapsed, done = now - self.start, self.step - self.initial
        left = elapsed / done * (self.total - self.step) if done else 0.0
        self.say(f"step {self.step}/{self.total}, held-out loss {shown}, {duration(elapsed)} elapsed, "
                 f"about {duration(left)} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "TrainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
