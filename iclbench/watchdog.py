"""A learner's call under watch: a line while it runs long, a time limit, and which errors it may own.

A learner is third-party code: it may call `sys.exit()`, raise a `BaseException` of its own,
or never return. Everything it raises, except the user's own interruption (Ctrl-C, SIGTERM),
is its failure and becomes its failed record; a call past the time limit is stopped by a
`LearnerTimeout` raised in it (SIGALRM, main thread only: a limit elsewhere only warns).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable, Iterator

REPORT_EVERY = 60.0  # seconds between "still running" lines


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; `signum` says which (the CLI installs the handlers)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class LearnerTimeout(Exception):
    """A learner's call ran past the run's per-learner time limit."""


def learner_fault(err: BaseException) -> bool:
    """Whether `err`, raised inside a learner's call, is the learner's failure (a failed
    record) rather than the user stopping the run."""
    return not isinstance(err, (KeyboardInterrupt, Interrupted, GeneratorExit))


@contextlib.contextmanager
def watched(what: str, limit: float | None, say: Callable[[str], None],
            every: float | None = None) -> Iterator[None]:
    """Run the block as `what` (e.g. "learner 'gd' in predict on linear, seed 0"): every
    `every` seconds `say` is told it is still running; past `limit` seconds it is stopped by
    LearnerTimeout (main thread only)."""
    start, done = time.monotonic(), threading.Event()
    every = REPORT_EVERY if every is None else every

    def report() -> None:
        while not done.wait(every):
            say(f"{what}: still running after {time.monotonic() - start:.0f} s")

    reporter = threading.Thread(target=report, daemon=True, name="iclbench-watchdog")
    reporter.start()
    armed = limit is not None and threading.current_thread() is threading.main_thread()
    previous = None
    if armed:
        def stop(signum: int, frame: object) -> None:
            raise LearnerTimeout(f"{what} ran past the time limit of {limit:g} s")
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        done.set()
