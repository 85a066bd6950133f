"""Experiment trackers: optional mirrors of each training's curve (TensorBoard, W&B, ...).

results.jsonl stays the source of truth; a tracker only mirrors the curve rows the training
loop already stores (held-out loss, training loss, every monitor such as alignment to GD).
The selection reaches trainings twice: as a context variable (the classes, so a tracker from
a `--plugin` file works in this process) and as the environment variables ICLBENCH_TRACK
(comma-separated names) and ICLBENCH_TRACK_DIR (their folder), which worker processes and
Ray workers inherit; there the names are looked up among the installed entry-point plugins.
A tracker that fails is warned about once and dropped: the training goes on.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from iclbench.registry import RegistrationError

TRACK_ENV = "ICLBENCH_TRACK"
TRACK_DIR_ENV = "ICLBENCH_TRACK_DIR"
DEFAULT_FOLDER = Path(".iclbench-tracking")


class TrackerError(RuntimeError):
    """A selected tracker cannot run here (its package is missing)."""


class Tracker:
    """One training's mirror in an experiment tracker.

    A tracker is built per training with the tracking folder, then gets `start` once,
    `log` for each curve row (the training step and that row's values) and `finish` once.
    """

    name: str = ""
    requires: tuple[str, ...] = ()  # modules it imports, checked before anything runs
    install: str = "pip install iclbench[tracking]"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def start(self, run_name: str, config: dict[str, Any], first_step: int = 0) -> None:
        """Open the run `run_name`; `first_step` > 0 when a training resumes from a checkpoint."""

    def log(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Flush and close the run."""

    @classmethod
    def missing(cls) -> list[str]:
        """The modules in `requires` that cannot be imported here."""
        return [m for m in cls.requires if not _importable(m)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a dotted name whose parent is missing
        return False


def checked_tracker(cls: object, plugin: str) -> type[Tracker]:
    """A Tracker subclass with a string `name`: what `register_trackers` accepts."""
    where = f"plugin {plugin!r} registered {cls!r} as a tracker"
    if not (isinstance(cls, type) and issubclass(cls, Tracker)):
        raise RegistrationError(f"{where}, but it is not a subclass of iclbench.tracking.Tracker")
    if not isinstance(cls.name, str) or not cls.name:
        raise RegistrationError(f"{where}, but it has no string `name`")
    return cls


@dataclass(frozen=True)
class Tracking:
    """The trackers that mirror trainings, and the folder they write under."""

    trackers: tuple[type[Tracker], ...]
    folder: Path

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers]


def parse_names(names: str | Iterable[str] | None) -> list[str]:
    """`"a,b"` or `["a", "b"]` as a list of distinct names, in order."""
    items = names.split(",") if isinstance(names, str) else list(names or ())
    return list(dict.fromkeys(n.strip() for n in items if n.strip()))


def select(names: str | Iterable[str] | None, folder: str | Path, registry) -> Tracking | None:
    """The trackers `names` names, from `registry` (a catalog's `trackers`); None for no name.

    Checked at once, before anything runs: an unknown name raises UnknownNameError naming it
    and the known ones; a tracker whose package is missing raises TrackerError with the
    command that installs it."""
    classes = tuple(registry[name] for name in parse_names(names))
    for cls in classes:
        if cls.missing():
            raise TrackerError(f"tracker {cls.name!r} needs {', '.join(map(repr, cls.missing()))}, "
                               f"which is not installed: {cls.install}")
    return Tracking(classes, Path(folder)) if classes else None


_ACTIVE: ContextVar[Tracking | None] = ContextVar("iclbench_tracking", default=None)


@contextmanager
def tracking(selection: Tracking | None) -> Iterator[None]:
    """Within this block trainings mirror their curves to `selection` (None: to no tracker),
    in this process and in the worker processes it starts."""
    env = {TRACK_ENV: ",".join(selection.names), TRACK_DIR_ENV: str(selection.folder.resolve())} if selection else {}
    saved = {key: os.environ.get(key) for key in (TRACK_ENV, TRACK_DIR_ENV)}
    token = _ACTIVE.set(selection)
    _set_environment({TRACK_ENV: None, TRACK_DIR_ENV: None} | env)
    try:
        yield
    finally:
        _set_environment(saved)
        _ACTIVE.reset(token)


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def active() -> Tracking | None:
    """The innermost `tracking(...)` selection, else the one in the environment, else None."""
    return _ACTIVE.get() or _from_environment(os.environ.get(TRACK_ENV, ""), os.environ.get(TRACK_DIR_ENV, ""))


@lru_cache(maxsize=None)
def _from_environment(names: str, folder: str) -> Tracking | None:
    """The selection a worker inherited, found among the entry-point plugins; a name not
    found or not usable here is warned about once and skipped (the training still runs)."""
    if not parse_names(names):
        return None
    registry, classes = installed_trackers(), []
    for name in parse_names(names):
        try:
            classes.append(select([name], folder, registry).trackers[0])
        except Exception as err:
            warnings.warn(f"{TRACK_ENV}: tracker {name!r} is skipped in this process: {err}", stacklevel=2)
    return Tracking(tuple(classes), Path(folder or DEFAULT_FOLDER)) if classes else None


def installed_trackers():
    """The trackers of the installed entry-point plugins, in a lenient registry (the first of
    a name wins): what a worker process can look names up in."""
    from iclbench.plugins import call_register_hook, make_plugin_manager
    from iclbench.registry import Registry

    registry = Registry("tracker", strict=False)
    call_register_hook(make_plugin_manager(), "register_trackers",
                       lambda cls, plugin: registry.add(checked_tracker(cls, plugin).name, cls, plugin))
    return registry


class TrainingRun:
    """The trackers mirroring one training. A tracker that raises is warned about once and
    dropped, so a mirror never costs the training or its records."""

    def __init__(self, run_name: str = "", trackers: Iterable[Tracker] = ()) -> None:
        self.run_name, self.trackers = run_name, list(trackers)

    def start(self, config: dict[str, Any], first_step: int) -> None:
        for tracker in list(self.trackers):
            self._call(tracker, "start", self.run_name, config, first_step)

    def log(self, row: dict[str, Any]) -> None:
        """Mirror one curve row: every numeric column but `step`, at that step."""
        if not self.trackers:
            return
        values = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        for tracker in list(self.trackers):
            self._call(tracker, "log", int(row["step"]), values)

    def finish(self) -> None:
        for tracker in list(self.trackers):
            self._call(tracker, "finish")
        self.trackers.clear()

    def _call(self, tracker: Tracker, method: str, *args: Any) -> None:
        try:
            getattr(tracker, method)(*args)
        except Exception as err:
            self.trackers.remove(tracker)
            warnings.warn(f"tracker {tracker.name!r} failed in {method} for training {self.run_name!r} "
                          f"({type(err).__name__}: {err}); the training goes on without it "
                          "(results.jsonl keeps the whole curve)", stacklevel=3)
            if method != "finish":
                try:
                    tracker.finish()
                except Exception:
                    pass  # already reported above


def track_training(label: str, task: Any, train_config: dict[str, Any], generator: Any,
                   first_step: int = 0) -> TrainingRun:
    """Start the active trackers for one training of learner `label` on `task` (none active:
    a run that logs nothing). The run is named `<label>-<task label>-seed<seed>`."""
    selection = active()
    if selection is None:
        return TrainingRun()
    seed = training_seed(generator.initial_seed())
    task_label = getattr(task, "label", task.name)
    config = {"learner": label, "task": task.name, "task_config": _dump(getattr(task, "config", None)),
              "seed": seed, "generator_seed": generator.initial_seed(), "train": train_config}
    run = TrainingRun(f"{label}-{task_label}-seed{seed}", [])
    for cls in selection.trackers:
        try:
            run.trackers.append(cls(selection.folder))
        except Exception as err:
            warnings.warn(f"tracker {cls.name!r} could not be built ({type(err).__name__}: {err}); "
                          "the training goes on without it", stacklevel=2)
    run.start(config, first_step)
    return run


def _dump(config: Any) -> dict[str, Any]:
    return config.model_dump() if hasattr(config, "model_dump") else {}


@lru_cache(maxsize=256)
def training_seed(generator_seed: int, search: int = 1000) -> int | str:
    """The evaluation seed whose training stream (`seeding.generator(device, seed, "train")`)
    starts from `generator_seed`, among the first `search`; else `generator_seed` itself as
    `g<seed>`, so a run name always says which stream trained it."""
    from iclbench.seeding import derive_seed

    return next((s for s in range(search) if derive_seed(s, "train") == generator_seed), f"g{generator_seed}")
