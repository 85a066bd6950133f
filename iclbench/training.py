"""The meta-training loop shared by every trainable learner.

Fresh tasks every step from the training distribution, Adam with the reference code's
defaults (lr 1e-3, 5e-4 beyond 3 layers, beta2 0.98), batch 2048, global-norm gradient
clipping, a fixed held-out set evaluated every `eval_every` steps, a progress bar, and a
checkpoint every `checkpoint_every` steps from which an interrupted run resumes exactly
(the task generator's state is saved with the weights). A training holds its checkpoint's
lock throughout, so processes sharing a cache train each checkpoint once.
With trackers selected (`iclbench.tracking`), each curve row is mirrored to them as well.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from iclbench.allocator import retain_freed_memory
from iclbench.checkpoints import Checkpoint
from iclbench.config import EXECUTION_ONLY, OPTIONAL, StrictConfig
from iclbench.episode import Episode
from iclbench.seeding import derive_seed
from iclbench.task import Task
from iclbench.tracking import track_training

LossFn = Callable[[torch.nn.Module, Episode], torch.Tensor]
Monitor = Callable[[torch.nn.Module, Episode], "float | dict[str, float]"]  # a dict adds several columns


class TrainConfig(StrictConfig):
    """Meta-training hyperparameters (defaults from the paper's reference code)."""

    steps: int = Field(5000, ge=0, description="optimiser steps, each on fresh tasks")
    pool: int | None = Field(None, ge=1, json_schema_extra=OPTIONAL,
                             description="train on a fixed pool of this many tasks (a multiple of batch_size), "
                                         "cycled batch by batch; None: fresh tasks every step")
    batch_size: int = Field(2048, ge=1, description="tasks per step")
    lr: float | None = Field(None, gt=0, description="Adam learning rate; None: 1e-3, or 5e-4 beyond 3 layers")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1)
    grad_clip: float | None = Field(10.0, gt=0, description="global gradient-norm clip; None: off")
    eval_every: int = Field(100, ge=1, description="held-out evaluation period in steps",
                            json_schema_extra=EXECUTION_ONLY)
    eval_tasks: int = Field(4096, ge=1, description="size of the fixed held-out set")
    checkpoint_every: int = Field(500, ge=1, description="checkpoint period in steps, a multiple of eval_every",
                                  json_schema_extra=EXECUTION_ONLY)

    @model_validator(mode="after")
    def _check_periods(self):
        if self.checkpoint_every % self.eval_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of eval_every ({self.eval_every})")
        if self.pool is not None and self.pool % self.batch_size:
            raise ValueError(f"pool ({self.pool}) must be a multiple of batch_size ({self.batch_size})")
        return self


_COMPILE: ContextVar[bool] = ContextVar("compile_training", default=False)


@contextmanager
def compiled_training(on: bool = True):
    """Within this block, training steps run through torch.compile (fused kernels; on a CPU
    1.4x to 2x faster for the trained learners here). How a run executes, not what it trains: labels
    and checkpoint keys do not change, and results agree with eager ones to float rounding."""
    token = _COMPILE.set(on)
    try:
        yield
    finally:
        _COMPILE.reset(token)


def compiling() -> bool:
    return _COMPILE.get()


def step_loss(loss_fn: LossFn) -> LossFn:
    """`loss_fn` compiled when `compiled_training` is on; eager if compilation fails."""
    if not compiling():
        return loss_fn
    torch._dynamo.reset()  # one model at a time: earlier models' graphs would count against the recompile limit
    compiled = torch.compile(loss_fn, dynamic=False)

    def run(model, episode):
        nonlocal compiled
        try:
            return compiled(model, episode)
        except Exception as err:  # no C++ compiler or no Triton: train eagerly rather than fail
            if compiled is loss_fn:
                raise
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); training eagerly", stacklevel=2)
            compiled = loss_fn
            return loss_fn(model, episode)

    return run


@dataclass
class TrainResult:
    """The training curve: one row per evaluation (step, train loss, held-out loss, monitors)."""

    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    from_cache: bool = False
    resumed_at: int | None = None

    def info(self) -> dict:
        """What a trained learner's `fit_info` stores in its records."""
        return {"curve": self.curve, "train_seconds": self.seconds, "from_cache": self.from_cache,
                "resumed_at": self.resumed_at}


def held_out_set(task: Task, cfg: TrainConfig, generator: torch.Generator, device, dtype) -> Episode:
    """A fixed evaluation batch, from a stream seeded apart from the training tasks."""
    gen = torch.Generator(device=device).manual_seed(derive_seed(generator.initial_seed(), "held-out"))
    return task.sample(cfg.eval_tasks, generator=gen, device=device).to(dtype=dtype)


def task_stream(task: Task, cfg: TrainConfig, generator: torch.Generator, device, dtype) -> Callable[[int], Episode]:
    """`batch(step)`: the training batch of a step. Fresh tasks from `generator`, or with
    `cfg.pool` the step's `batch_size` tasks of a fixed pool, cycled in a fixed order (the
    paper's finite training sets, A.12: pool = batch_size trains full-batch on one set of
    tasks). The pool comes from its own stream, so a resumed run sees the same pool."""
    if cfg.pool is None:
        return lambda step: task.sample(cfg.batch_size, generator=generator, device=device).to(dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(derive_seed(generator.initial_seed(), "pool"))
    pool = task.sample(cfg.pool, generator=gen, device=device).to(dtype=dtype)  # (P, ...) the training set
    first = lambda step: cfg.batch_size * (step % (cfg.pool // cfg.batch_size))  # noqa: E731
    return lambda step: pool.slice(first(step), first(step) + cfg.batch_size)


def adam(model: torch.nn.Module, lr: float, cfg: TrainConfig) -> torch.optim.Adam:
    """The optimiser of every training: Adam with the config's betas."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2))


def progress_bar(total: int, desc: str, initial: int = 0) -> tqdm:
    """A training's step bar; off under TQDM_DISABLE (worker processes)."""
    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                disable=True if os.environ.get("TQDM_DISABLE") else None)


def checkpoint_state(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, curve: list[dict[str, float]],
                     generator: torch.Generator, done: bool, seconds: float) -> dict[str, Any]:
    """What a training checkpoint holds (`_restore` reads it back): weights, Adam state, the
    task stream's generator state and the curve so far."""
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "curve": curve,
            "generator": generator.get_state().cpu(), "done": done, "seconds": seconds}


@dataclass
class Recipe:
    """One `meta_train` call's arguments, captured instead of run (`capturing_trainings`), so
    several seeds' trainings can run as one stacked model (`iclbench.stacked`)."""

    model: torch.nn.Module
    loss_fn: LossFn
    task: Task
    cfg: TrainConfig
    generator: torch.Generator
    device: torch.device | str
    lr: float
    dtype: torch.dtype
    checkpoint: Checkpoint | None
    monitors: dict[str, Monitor]
    desc: str

    def train_alone(self) -> TrainResult:
        """This training run by `meta_train` itself."""
        return meta_train(self.model, self.loss_fn, self.task, self.cfg, generator=self.generator, device=self.device,
                          lr=self.lr, dtype=self.dtype, checkpoint=self.checkpoint, monitors=self.monitors,
                          desc=self.desc)


_CAPTURE: ContextVar[list[Recipe] | None] = ContextVar("capture_trainings", default=None)


@contextmanager
def capturing_trainings():
    """Within this block `meta_train` records its arguments in the yielded list and returns an
    empty result without training: a learner's `fit` then yields the training it would run."""
    captured: list[Recipe] = []
    token = _CAPTURE.set(captured)
    try:
        yield captured
    finally:
        _CAPTURE.reset(token)


def meta_train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    task: Task,
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    device: torch.device | str,
    lr: float,
    dtype: torch.dtype = torch.float32,
    checkpoint: Checkpoint | None = None,
    monitors: dict[str, Monitor] | None = None,
    desc: str = "training",
) -> TrainResult:
    """Train `model` in place to minimise `loss_fn` on fresh tasks; resume or reuse `checkpoint`."""
    captured = _CAPTURE.get()
    if captured is not None:
        captured.append(Recipe(model, loss_fn, task, cfg, generator, device, lr, dtype, checkpoint, monitors or {}, desc))
        return TrainResult()
    with torch.enable_grad():  # callers may sit inside no_grad (analyses, evaluation)
        return _train(model, loss_fn, task, cfg, generator, device, lr, dtype, checkpoint, monitors, desc)


def _train(model, loss_fn, task, cfg, generator, device, lr, dtype, checkpoint, monitors, desc) -> TrainResult:
    if torch.device(device).type == "cpu":
        retain_freed_memory()
    model.to(device=device, dtype=dtype)
    if checkpoint is None:
        return _train_from(None, model, loss_fn, task, cfg, generator, device, lr, dtype, monitors, desc)
    # held from reading the checkpoint to its final save: a second process training the same
    # key waits here, then reads the finished checkpoint instead of training it again
    with checkpoint.lock(on_wait=lambda: _say_waiting(checkpoint, desc)):
        return _train_from(checkpoint, model, loss_fn, task, cfg, generator, device, lr, dtype, monitors, desc)


def _say_waiting(checkpoint: Checkpoint, desc: str) -> None:
    """Tell the user why nothing moves: another process holds this checkpoint's lock."""
    tqdm.write(f"{desc}: waiting for another process training {checkpoint.path}", file=sys.stderr)


def _restore(checkpoint: Checkpoint | None, model: torch.nn.Module, opt: torch.optim.Optimizer,
             generator: torch.Generator) -> dict[str, Any] | None:
    """Load the checkpoint's state into model, optimiser and generator, or return None to start
    afresh. A state that does not fit them (changed model code, corrupt tensors) is discarded
    like an unreadable file, with the model's initial weights put back."""
    state = checkpoint.load() if checkpoint else None
    if state is None:
        return None
    initial, initial_generator = {k: v.clone() for k, v in model.state_dict().items()}, generator.get_state()
    try:
        model.load_state_dict(state["model"])
        if not state["done"]:
            generator.set_state(state["generator"])
            opt.load_state_dict(state["optimizer"])
        return state
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        model.load_state_dict(initial)
        generator.set_state(initial_generator)
        checkpoint.discard(f"does not fit the model ({type(err).__name__})")
        return None


def _train_from(checkpoint, model, loss_fn, task, cfg, generator, device, lr, dtype, monitors, desc) -> TrainResult:
    """Reuse a finished checkpoint, or train from scratch or from an unfinished one."""
    opt = adam(model, lr, cfg)
    held_out = held_out_set(task, cfg, generator, device, dtype)
    result, step = TrainResult(), 0
    state = _restore(checkpoint, model, opt, generator)
    if state is not None:
        result.curve = list(state["curve"])
        if state["done"]:
            result.from_cache, result.seconds = True, float(state["seconds"])
            return result
        step = result.resumed_at = int(state["step"])
    tracked = track_training(desc, task, cfg.model_dump(), generator, first_step=step)  # curve mirrors, if any
    start, elapsed = time.perf_counter(), float(state["seconds"]) if state else 0.0

    def save(done: bool) -> None:
        if checkpoint:
            checkpoint.save(checkpoint_state(model, opt, step, result.curve, generator, done,
                                             elapsed + time.perf_counter() - start))

    train_loss = step_loss(loss_fn)
    next_batch = task_stream(task, cfg, generator, device, dtype)
    running = torch.zeros((), device=device, dtype=dtype)  # summed train loss since the last evaluation
    bar = progress_bar(cfg.steps, desc, initial=step)
    try:
        while step < cfg.steps:
            loss = train_loss(model, next_batch(step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            running += loss.detach()
            step += 1
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                n = step % cfg.eval_every or cfg.eval_every
                row = evaluate_row(model, loss_fn, held_out, monitors or {}, step, float(running) / n)
                result.curve.append(row)
                tracked.log(row)
                running.zero_()
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", held_out=f"{row['eval_loss']:.4f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save(done=False)
    except BaseException:
        tracked.finish()  # keeps what was mirrored so far
        raise
    finally:
        bar.close()
    result.seconds = elapsed + time.perf_counter() - start
    save(done=True)
    tracked.finish()
    return result


def evaluate_row(model, loss_fn: LossFn, held_out: Episode, monitors: dict[str, Monitor],
                 step: int, train_loss: float) -> dict[str, float]:
    """One curve row: the held-out loss and every monitor's value at `step`."""
    with torch.no_grad():
        row: dict[str, Any] = {"step": step, "train_loss": train_loss, "eval_loss": float(loss_fn(model, held_out))}
    for name, monitor in monitors.items():
        value = monitor(model, held_out)
        row.update({k: float(v) for k, v in value.items()} if isinstance(value, dict) else {name: float(value)})
    return row
