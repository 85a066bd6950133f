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

import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from iclbench.train_progress import TrainProgress, duration

from iclbench.allocator import retain_freed_memory
from iclbench.checkpoints import Checkpoint
from iclbench.config import EXECUTION_ONLY, OPTIONAL, StrictConfig
from iclbench.episode import Episode
from iclbench.seeding import derive_seed
from iclbench.task import Task
from iclbench.tracking import track_training

LossFn = Callable[[torch.nn.Module, Episode], torch.Tensor]
StepHook = Callable[[int], None]  # called with the step's index before its batch is drawn
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
    grad_clip_value: float | None = Field(None, gt=0, json_schema_extra=OPTIONAL,
                                          description="clip each gradient element to +-this, before the norm clip "
                                                      "(the mesa reference's optax.clip); None: off")
    weight_decay: float | None = Field(None, gt=0, json_schema_extra=OPTIONAL,
                                       description="decoupled weight decay (AdamW); None: plain Adam")
    warmup: int | None = Field(None, ge=1, json_schema_extra=OPTIONAL,
                               description="steps of linear learning-rate warm-up from 0; None: none")
    schedule: Literal["cosine"] | None = Field(None, json_schema_extra=OPTIONAL,
                                               description="after warm-up, cosine decay to lr_end; None: constant")
    lr_end: float | None = Field(None, ge=0, json_schema_extra=OPTIONAL,
                                 description="the cosine schedule's final learning rate; None: 0")
    schedule_steps: int | None = Field(None, ge=1, json_schema_extra=OPTIONAL,
                                       description="the cosine schedule's length in steps, warm-up included "
                                                   "(the reference may train fewer steps than it schedules); None: steps")
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
        """What a trained learner's `fit_info` stores in its records: the curve, the time, and
        whether the held-out loss was still falling when the budget ran out (`convergence`)."""
        from iclbench.convergence import trend

        end = trend(self.curve)
        return {"curve": self.curve, "train_seconds": self.seconds, "from_cache": self.from_cache,
                "resumed_at": self.resumed_at, **({"trend": end.as_dict()} if end else {})}


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


def adam(model: torch.nn.Module, lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of every training: Adam with the config's betas, AdamW where the config
    has weight decay."""
    if cfg.weight_decay is not None:
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2))


def scheduled(cfg: TrainConfig) -> bool:
    """Whether the learning rate changes over training."""
    return cfg.warmup is not None or cfg.schedule is not None


def learning_rate(cfg: TrainConfig, peak: float, step: int) -> float:
    """The learning rate of step `step` (0-based): linear warm-up from 0 over `warmup` steps, then
    `peak`, or a cosine from `peak` down to `lr_end` at `schedule_steps` (optax's
    warmup_cosine_decay_schedule, whose decay length counts the warm-up)."""
    warmup, end = cfg.warmup or 0, cfg.lr_end or 0.0
    if step < warmup:
        return peak * step / warmup
    if cfg.schedule is None:
        return peak
    span = max((cfg.schedule_steps or cfg.steps) - warmup, 1)
    t = min(step - warmup, span) / span
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * t))


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
    on_step: StepHook | None = None

    def train_alone(self) -> TrainResult:
        """This training run by `meta_train` itself."""
        return meta_train(self.model, self.loss_fn, self.task, self.cfg, generator=self.generator, device=self.device,
                          lr=self.lr, dtype=self.dtype, checkpoint=self.checkpoint, monitors=self.monitors,
                          desc=self.desc, on_step=self.on_step)


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
    on_step: StepHook | None = None,
) -> TrainResult:
    """Train `model` in place to minimise `loss_fn(model, episode)` on `cfg.steps` batches of
    fresh tasks from `task` (or a fixed pool), by Adam at `lr` with `cfg`'s gradient clip; a
    held-out row every `cfg.eval_every` steps (and `monitors`' values) makes the curve. With a
    `checkpoint` (`training_checkpoint(learner, task, generator)`), a finished training is
    reused and an unfinished one resumed, to the same weights. `on_step(step)` runs before each
    step's batch is drawn (a curriculum sets the step's task there; it also runs on resume).
    The one training loop of iclbench (`run_steps`): stacked seeds run it too."""
    captured = _CAPTURE.get()
    if captured is not None:
        captured.append(Recipe(model, loss_fn, task, cfg, generator, device, lr, dtype, checkpoint, monitors or {}, desc,
                               on_step))
        return TrainResult()
    recipe = Recipe(model, loss_fn, task, cfg, generator, device, lr, dtype, checkpoint, monitors or {}, desc, on_step)
    with torch.enable_grad():  # callers may sit inside no_grad (analyses, evaluation)
        return _train(recipe)


def _train(r: Recipe) -> TrainResult:
    if torch.device(r.device).type == "cpu":
        retain_freed_memory()
    r.model.to(device=r.device, dtype=r.dtype)
    if r.checkpoint is None:
        return _train_from(r)
    # held from reading the checkpoint to its final save: a second process training the same
    # key waits here, then reads the finished checkpoint instead of training it again
    with r.checkpoint.lock(on_wait=lambda: _say_waiting(r.checkpoint, r.desc)):
        return _train_from(r)


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


def _train_from(r: Recipe) -> TrainResult:
    """Reuse a finished checkpoint, or train from scratch or from an unfinished one."""
    cfg, opt = r.cfg, adam(r.model, r.lr, r.cfg)
    held_out = held_out_set(r.task, cfg, r.generator, r.device, r.dtype)
    result, step = TrainResult(), 0
    state = _restore(r.checkpoint, r.model, opt, r.generator)
    if state is not None:
        result.curve = list(state["curve"])
        if state["done"]:
            result.from_cache, result.seconds = True, float(state["seconds"])
            TrainProgress(cfg.steps, r.desc, bar=False).say(f"loaded from cache ({cfg.steps} steps, {ending(result)}, trained in "
                                                 f"{duration(result.seconds)} when it was made)")
            return result
        step = result.resumed_at = int(state["step"])
    tracked = track_training(r.desc, r.task, cfg.model_dump(), r.generator, first_step=step)  # curve mirrors, if any
    trainee = Trainee(r.model, r.loss_fn, opt, held_out, r.monitors, result, tracked, r.on_step)
    start, elapsed = time.perf_counter(), float(state["seconds"]) if state else 0.0

    def save(at: int, done: bool = False) -> None:
        if r.checkpoint:
            r.checkpoint.save(checkpoint_state(r.model, opt, at, result.curve, r.generator, done,
                                               elapsed + time.perf_counter() - start))

    train_loss = step_loss(r.loss_fn)
    next_batch = task_stream(r.task, cfg, r.generator, r.device, r.dtype)

    def gradients(at: int) -> torch.Tensor:
        loss = train_loss(r.model, next_batch(at))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach().reshape(1)  # (1,)

    with TrainProgress(cfg.steps, r.desc, initial=step) as progress:
        if result.resumed_at is not None:
            progress.say(f"resumed at step {step} of {cfg.steps}")
        first = step
        step = run_steps([trainee], cfg, step, gradients, progress, save)
        result.seconds = elapsed + time.perf_counter() - start
        save(step, done=True)
        resumed = f" (steps {first + 1}-{step}, resumed)" if first else ""
        progress.say(f"trained {step} steps in {duration(time.perf_counter() - start)}{resumed}, {ending(result)}")
    return result


def ending(result: TrainResult) -> str:
    """`held-out loss 0.0123`: where a training's curve ended."""
    last = result.curve[-1]["eval_loss"] if result.curve else float("nan")
    return f"held-out loss {last:.4g}"


@dataclass
class Trainee:
    """One model in the training loop: what its step and its bookkeeping act on."""

    model: torch.nn.Module
    loss_fn: LossFn
    opt: torch.optim.Optimizer
    held_out: Episode
    monitors: dict[str, Monitor]
    result: TrainResult
    tracked: Any  # its curve's mirrors (iclbench.tracking)
    on_step: StepHook | None = None


def apply_update(t: Trainee, cfg: TrainConfig, step: int = 0) -> None:
    """Step `step` once the model's gradients are in place: the element clip, the global-norm
    clip, the scheduled learning rate (`learning_rate`, a function of the step alone, so a
    resumed training continues it), then Adam."""
    if cfg.grad_clip_value is not None:
        torch.nn.utils.clip_grad_value_(t.model.parameters(), cfg.grad_clip_value)
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.grad_clip)
    if scheduled(cfg):
        for group in t.opt.param_groups:
            group["lr"] = learning_rate(cfg, t.opt.defaults["lr"], step)
    t.opt.step()


def run_steps(trainees: list[Trainee], cfg: TrainConfig, step: int, gradients: Callable[[int], torch.Tensor],
              progress: TrainProgress, save: Callable[[int], None]) -> int:
    """The training loop, for one model or for several trained side by side (stacked seeds): from
    `step` to `cfg.steps`, each step's hooks, then `gradients(step)` (which leaves every model's
    gradients in place and returns their (M,) losses), then each model's `apply_update`; a
    held-out row per model every `cfg.eval_every` steps; `save(step)` at every intermediate
    checkpoint (the caller saves the final state). Mirrors are finished however it ends."""
    first = next(trainees[0].model.parameters())
    running = torch.zeros(len(trainees), device=first.device, dtype=first.dtype)  # (M,) summed loss since the last row
    try:
        while step < cfg.steps:
            for t in trainees:
                if t.on_step is not None:
                    t.on_step(step)
            losses = gradients(step)  # (M,)
            for t in trainees:
                apply_update(t, cfg, step)
            running += losses
            step += 1
            progress.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                n = step % cfg.eval_every or cfg.eval_every
                for m, t in enumerate(trainees):
                    row = evaluate_row(t.model, t.loss_fn, t.held_out, t.monitors, step, float(running[m]) / n)
                    t.result.curve.append(row)
                    t.tracked.log(row)
                running.zero_()
                progress.held_out([t.result.curve[-1]["eval_loss"] for t in trainees])
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save(step)
    finally:
        for t in trainees:  # on an interruption too: what was mirrored so far is kept
            t.tracked.finish()
    return step


def evaluate_row(model, loss_fn: LossFn, held_out: Episode, monitors: dict[str, Monitor],
                 step: int, train_loss: float) -> dict[str, float]:
    """One curve row: the held-out loss and every monitor's value at `step`."""
    with torch.no_grad():
        row: dict[str, Any] = {"step": step, "train_loss": train_loss, "eval_loss": float(loss_fn(model, held_out))}
    for name, monitor in monitors.items():
        value = monitor(model, held_out)
        row.update({k: float(v) for k, v in value.items()} if isinstance(value, dict) else {name: float(value)})
    return row
