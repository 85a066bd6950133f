"""A curriculum: a training task that changes with the training step, through `meta_train`'s
per-step hook rather than a side effect of drawing a batch.

`Curriculum(task, schedule, train_generator)` wraps a task; `schedule(step)` gives the config
overrides of that step's task (e.g. fewer dimensions and context points early on, as in Garg
et al. 2022), and its `on_step` is what `meta_train(..., on_step=...)` calls before each step's
batch. Draws from the training stream come from the step's task, inputs zero-padded to the
full task's width (`pad_to`); any other draw (the held-out set, drawn before training) is of the
full task. The step is the training loop's, so a resumed training picks the curriculum up where
its checkpoint left it; an optional `counter` (a model buffer) is kept at the number of steps
drawn, so it is saved with the weights.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from iclbench.episode import Episode
from iclbench.task import Task


class Curriculum(Task):
    """`task` as `schedule` has it at each training step (module docstring)."""

    name = "curriculum"

    def __init__(self, task: Task, schedule: Callable[[int], dict[str, Any]], train_generator: torch.Generator,
                 pad_to: int | None = None, counter: torch.Tensor | None = None) -> None:
        self.task, self.schedule, self.train_generator = task, schedule, train_generator
        self.pad_to, self.counter = pad_to, counter
        self.config = task.config
        self.current: dict[str, Any] | None = None  # the step's overrides; None before the first step
        self._tasks: dict[str, Task] = {}

    def on_step(self, step: int) -> None:
        """The hook `meta_train` calls before drawing step `step`'s batch."""
        self.current = self.schedule(step)
        if self.counter is not None:
            self.counter.fill_(step + 1)

    def at(self, overrides: dict[str, Any]) -> Task:
        """The task with `overrides` applied to its config (built once per stage)."""
        full = self.task.config.model_dump()
        if all(full.get(k) == v for k, v in overrides.items()):
            return self.task
        key = repr(sorted(overrides.items()))
        if key not in self._tasks:
            self._tasks[key] = type(self.task)({**full, **overrides})
        return self._tasks[key]

    def sample(self, n: int, *, generator: torch.Generator, device) -> Episode:
        if generator is not self.train_generator or self.current is None:
            return self.task.sample(n, generator=generator, device=device)
        ep = self.at(self.current).sample(n, generator=generator, device=device)
        missing = 0 if self.pad_to is None else self.pad_to - ep.dx
        if missing > 0:  # the coordinates the step's task leaves out are zero (Garg's truncation)
            ep = Episode(F.pad(ep.context_x, (0, missing)), ep.context_y, F.pad(ep.query_x, (0, missing)), ep.query_y)
        return ep
