"""Cheap up-front estimates of what a run will need, so absurd budgets fail fast.

A task gives its episode shape from its config alone (`Task.episode_shape`), never by
sampling (a `d=2000000000` task would allocate what it describes); a task that gives none is
sampled once, and only when its config's sizes are small. Each learner may estimate its
largest step (`Learner.workload`) from that shape, without allocating anything.
`check_workloads` refuses a run whose estimate exceeds the machine's memory or a week of
compute, with a one-line message that says what drives it and how to force it. The
evaluation tasks themselves (`n_tasks` of them, sampled at once) are always counted in plans
(`check_plan`), so a learner without an estimate of its own (`zero`, `least-squares`) is
refused as `gd` is when the tasks alone cannot fit.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable

import torch

from iclbench.errors import UsageError
from iclbench.shapes import TaskShape, Workload  # noqa: F401  (re-exported: plugins import them from here)

if TYPE_CHECKING:
    from iclbench.learner import Learner
    from iclbench.suite import Suite
    from iclbench.task import Task

FLOPS = 1e10  # conservative sustained flop/s for the seconds estimates
OP_SECONDS = 1e-5  # Python and dispatch overhead of one small tensor operation
ELEMENT_SECONDS = 5e-9  # writing one number: what bounds the many tiny per-task products here
TAPE_FACTOR = 1.5  # the backward pass's gradients add about half the autograd tape at its peak
WEEK = 7 * 24 * 3600.0
FORCE_HINT = "pass --allow-large to run it anyway"
SAMPLE_LIMIT = 10**8  # a task without a shape estimate is sampled once only if its config's sizes multiply to less


class WorkloadError(UsageError):
    """A run refused up front: its estimated memory or time exceeds the limit (a usage error)."""


def task_shape(task: Task, *, allow_large: bool = False) -> TaskShape:
    """The episode dimensions of `task`: its own `episode_shape()` from the config, else one
    task sampled on the CPU, which a config of large sizes refuses (WorkloadError) unless
    `allow_large`."""
    shape = task.episode_shape()
    if shape is not None:
        return shape
    sizes = config_sizes(task.config.model_dump())
    if math.prod(v for _, v in sizes) > SAMPLE_LIMIT and not allow_large:
        big = ", ".join(f"{k}={v}" for k, v in sorted(sizes, key=lambda kv: -kv[1])[:3])
        raise WorkloadError(f"task {task.label} gives no size estimate (Task.episode_shape) and its config's sizes "
                            f"are large ({big}): sampling one task to measure it could exhaust memory; {FORCE_HINT}")
    return sampled_shape(task)


def sampled_shape(task: Task) -> TaskShape:
    """The episode dimensions of `task`, from one task sampled on the CPU."""
    ep = task.sample(1, generator=torch.Generator().manual_seed(0), device="cpu")
    T, D = (None, None) if ep.tokens is None else ep.tokens.shape[1:]
    return TaskShape(ep.n_context, ep.dx, ep.dy, T, D, ep.token_format)


def config_sizes(values: Any, prefix: str = "") -> list[tuple[str, int]]:
    """The (dotted key, value) of every integer above 1 in a config dump, nested tables and
    lists included, seeds left out: what a task's size can grow with."""
    if isinstance(values, dict):
        return [kv for k, v in values.items() for kv in config_sizes(v, f"{prefix}{k}.")]
    if isinstance(values, (list, tuple)):
        return [kv for i, v in enumerate(values) for kv in config_sizes(v, f"{prefix}{i}.")]
    key = prefix.rstrip(".")
    if isinstance(values, bool) or not isinstance(values, int) or key.endswith("seed") or abs(values) < 2:
        return []
    return [(key, abs(values))]


def episode_bytes(shape: TaskShape, n_tasks: int, dtype_bytes: int) -> float:
    """Memory of `n_tasks` sampled tasks of `shape` in a dtype of `dtype_bytes`."""
    return float(n_tasks) * shape.episode_elements() * dtype_bytes


def tasks_workload(shape: TaskShape, n_tasks: int, dtype_bytes: int) -> Workload:
    """What sampling the `n_tasks` evaluation tasks of `shape` holds at once, whatever the learner."""
    return Workload(float(n_tasks) * shape.sample_elements() * dtype_bytes, None,
                    f"n_tasks={n_tasks} evaluation tasks x {shape.sample_elements()} numbers each")


def compute_seconds(flops: float, ops: float = 0.0, elements: float = 0.0) -> float:
    """Rough wall time of `flops` floating-point operations in `ops` tensor operations that
    write `elements` numbers in all."""
    return flops / FLOPS + ops * OP_SECONDS + elements * ELEMENT_SECONDS


def format_bytes(n: float) -> str:
    """`n` bytes in binary units, e.g. "74.5 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    """`s` seconds in the largest fitting unit, e.g. "3.2 days"."""
    for unit, size in (("years", 365 * 86400.0), ("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def available_memory(device: torch.device | str | None = None) -> int:
    """Bytes a run may use: the CUDA device's memory for a CUDA device, else physical memory."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def suite_items(learners: Iterable[Learner], suite: Suite, *, allow_large: bool = False) -> list[tuple[Learner, TaskShape]]:
    """(learner, shape) pairs covering a suite: its training task and every distinct eval shape
    (`allow_large`: as `task_shape`)."""
    shapes: dict[TaskShape, TaskShape] = {}
    for t in [suite.train, *(ev.task for ev in suite.evals)]:
        shape = task_shape(t, allow_large=allow_large)
        if shape not in shapes or shapes[shape].extra < shape.extra:  # equal shapes: the costlier sampling
            shapes[shape] = shape
    return [(learner, shape) for learner in learners for shape in shapes.values()]


def refusal(label: str, w: Workload, memory: float, time_limit: float) -> str | None:
    """The one-line reason `w` is refused, or None if it fits."""
    why = f" ({w.drivers})" if w.drivers else ""
    if w.peak_bytes > memory:
        return (f"{label} needs about {format_bytes(w.peak_bytes)} of memory, more than the "
                f"{format_bytes(memory)} available{why}; {FORCE_HINT}")
    if w.seconds is not None and w.seconds > time_limit:
        return (f"{label} needs about {format_seconds(w.seconds)} of compute, more than the "
                f"limit of {format_seconds(time_limit)}{why}; {FORCE_HINT}")
    return None


def check_workloads(
    items: Iterable[tuple[Learner, TaskShape | Task]],
    *,
    n_tasks: int = 10000,
    batch_size: int = 20000,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    memory_limit: float | None = None,
    time_limit: float = WEEK,
    allow_large: bool = False,
) -> list[Workload | None]:
    """Estimate each (learner, task or shape) pair and refuse the first that cannot fit.

    Each estimate adds the `n_tasks` evaluation tasks to the learner's own peak (predictions
    run `batch_size` tasks at a time in `dtype`); a learner that gives no estimate of its own
    is still counted for the evaluation tasks. Raises `WorkloadError` with a one-line message
    unless `allow_large`; returns the estimates in the order of `items`.
    """
    limit = available_memory(device) if memory_limit is None else memory_limit
    shapes: dict[int, tuple[Task, TaskShape]] = {}  # one shape per task object, the task kept alive
    out: list[Workload | None] = []
    for learner, task in items:
        if not isinstance(task, TaskShape):
            if id(task) not in shapes:
                shapes[id(task)] = task, task_shape(task, allow_large=allow_large)
            task = shapes[id(task)][1]
        w = estimate(learner, task, n_tasks, batch_size, dtype.itemsize)
        out.append(w)
        reason = None if w is None or allow_large else refusal(learner.label, w, limit, time_limit)
        if reason:
            raise WorkloadError(reason)
    return out


def estimate(learner: Learner, shape: TaskShape, n_tasks: int, batch_size: int, dtype_bytes: int) -> Workload:
    """`learner`'s estimate for an evaluation of `n_tasks` tasks of `shape`, the tasks included:
    its own peak while it holds the episode, or sampling the tasks if that is larger. A learner
    without an estimate of its own is counted for the tasks alone."""
    tasks = tasks_workload(shape, n_tasks, dtype_bytes)
    w = learner.workload(shape, n_tasks, max(1, min(batch_size, n_tasks)), dtype_bytes)
    if w is None:
        return tasks
    own = Workload(w.peak_bytes + episode_bytes(shape, n_tasks, dtype_bytes), w.seconds, w.drivers)
    return own if own.peak_bytes >= tasks.peak_bytes else Workload(tasks.peak_bytes, w.seconds, tasks.drivers)


def check_plan(plan, catalog, *, allow_large: bool = False) -> list[Workload | None]:
    """Refuse an evaluation plan whose learners (the reference included) or whose evaluation
    tasks alone cannot fit, before anything is fitted or sampled; `allow_large` runs it anyway."""
    specs = plan.learners + ([plan.align_to] if plan.align_to else [])
    learners = [s.prototype(catalog) for s in specs]
    return check_workloads(suite_items(learners, plan.suite, allow_large=allow_large), n_tasks=plan.n_tasks,
                           batch_size=plan.batch_size, dtype=plan.dtype, device=plan.device, allow_large=allow_large)
