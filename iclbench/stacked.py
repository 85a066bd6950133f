"""Many small models at once: the trainings of several seeds of one configuration run as one
model whose parameters are stacked along a leading seed dimension (torch.func.vmap), so a GPU
that one small model leaves idle does M models' work per step.

Each seed keeps everything it has when trained alone: its own task stream, held-out set,
monitors, parameters, gradient-norm clipping and Adam optimiser (only the forward and backward
pass is batched), and its own checkpoint in the standard format, written every
`checkpoint_every` steps and at the end. Evaluation then loads those checkpoints as usual, and
an interrupted stacked training resumes, one seed at a time, through `meta_train`.

Stacking never changes a bit unless asked to: on a CPU it trains on one thread, as `reproduce`
trains each model, and before the first step the stacked gradients on a training-sized check
batch are compared with each model's own eager ones; if any bit differs the seeds train one by
one, saying by how much (`exact=False`, `--stack-seeds close`, accepts float rounding). Every
built-in trained learner stacks bit for bit on a CPU: the gradient is taken per model inside
vmap, MKL runs in its alignment-independent mode (`iclbench.mkl`), so a product on a seed's slice
of a stacked batch has the bits of the same product alone, and the models use operations that
vmap batches one to one (`iclbench_plugins.transformers.nn.stackable`, the mesa-layer's `LUSolve`).
On CUDA batched and single products may use different cuBLAS kernels. Buffers are read from
each model every step; a forward that writes a buffer (running statistics) is not supported.
Like `--compile`, stacking changes how a run executes, not what it computes: no label, record
key or checkpoint key changes.
"""

from __future__ import annotations

import contextlib
import copy
import time

import torch
from torch.func import functional_call, grad_and_value, vmap

from iclbench import mkl
from iclbench.episode import Episode
from iclbench.seeding import derive_seed
from iclbench.training import (Recipe, Trainee, TrainResult, adam, checkpoint_state, held_out_set, run_steps,
                               task_stream)
from iclbench.train_progress import TrainProgress, duration
from iclbench.tracking import track_training

FIELDS = ("context_x", "context_y", "query_x", "query_y", "tokens")  # what a stacked loss reads of an episode


class Objective(torch.nn.Module):
    """A recipe's training loss as a module of the episode's tensors, so vmap can stack it."""

    def __init__(self, model: torch.nn.Module, loss_fn, token_format: str | None) -> None:
        super().__init__()
        self.model, self.loss_fn, self.token_format = model, loss_fn, token_format

    def forward(self, cx, cy, qx, qy, tokens):
        episode = Episode(cx, cy, qx, qy, tokens=tokens, token_format=self.token_format)
        return self.loss_fn(self.model, episode)


def stackable(recipes: list[Recipe]) -> str | None:
    """Why `recipes` cannot train as one model (None: they can): they must share the loss, the
    task, the training config, the rate and every parameter's shape, and none may have started."""
    first = recipes[0]
    shapes = [tuple((n, p.shape) for n, p in r.model.named_parameters()) for r in recipes]
    checks = [
        (all(r.cfg == first.cfg for r in recipes), "training configs differ"),
        (all(r.lr == first.lr and r.dtype == first.dtype for r in recipes), "rates or dtypes differ"),
        (all(r.task.label == first.task.label and r.task.config == first.task.config for r in recipes), "tasks differ"),
        (all(s == shapes[0] for s in shapes), "parameter shapes differ"),
        (all(getattr(r.loss_fn, "__func__", r.loss_fn) == getattr(first.loss_fn, "__func__", first.loss_fn)
             for r in recipes), "losses differ"),
        (all(r.checkpoint is None or r.checkpoint.load() is None for r in recipes), "a training has a checkpoint"),
    ]
    return next((why for ok, why in checks if not ok), None)


def train_recipes(recipes: list[Recipe], progress=lambda msg: None, exact: bool = True) -> list[TrainResult]:
    """Train `recipes` as one stacked model when they can (`stackable`), else one by one. With
    `exact`, only when the stacked gradients on a training-sized check batch are bit for bit
    each model's own; else float rounding apart is accepted (`--stack-seeds close`)."""
    why = stackable(recipes) if len(recipes) > 1 else "one training"
    if why is None:
        try:
            with contextlib.ExitStack() as locks, torch.enable_grad():
                for r in recipes:
                    if r.checkpoint is not None:
                        locks.enter_context(r.checkpoint.lock())
                if exact and torch.device(recipes[0].device).type == "cpu":
                    locks.enter_context(one_thread())
                return _train_stacked(recipes, exact)
        except Unstackable as err:
            why = str(err)
    if len(recipes) > 1:
        progress(f"{recipes[0].desc}: {len(recipes)} seeds trained one by one ({why})")
    return [r.train_alone() for r in recipes]


class Unstackable(Exception):
    """Found on a check batch before any step: the loss does not run under vmap (a
    data-dependent branch, `.item()`, an in-place `.data` write), or, when exactness is asked
    for, its stacked gradients are not bit for bit the one-by-one ones. The seeds then train one
    by one."""


def _train_stacked(recipes: list[Recipe], exact: bool) -> list[TrainResult]:
    cfg, first, M = recipes[0].cfg, recipes[0], len(recipes)
    for r in recipes:
        r.model.to(device=r.device, dtype=r.dtype)
    check_gen = torch.Generator(device=first.device).manual_seed(derive_seed(first.generator.initial_seed(), "stack-check"))
    check = first.task.sample(cfg.batch_size, generator=check_gen, device=first.device).to(dtype=first.dtype)
    objectives = [Objective(r.model, r.loss_fn, check.token_format) for r in recipes]
    own = [dict(o.named_parameters()) for o in objectives]  # each model's own leaves, as `meta_train` trains them
    own_buffers = [dict(o.named_buffers()) for o in objectives]
    base = copy.deepcopy(objectives[0])  # the function every model's weights are put into
    batched_dims = [None if getattr(check, f) is None else 0 for f in FIELDS]
    # the gradient is taken inside vmap, so each model's backward runs the same per-model products
    # (weight gradients as x^T g, say) as its own training would; a backward through a vmapped
    # forward would take the batched products' formulas and sum in another order
    grads_of = vmap(grad_and_value(lambda p, b, *x: functional_call(base, (p, b), x)), in_dims=(0, 0, *batched_dims))
    try:  # one pass on the check batch, before any step: what vmap refuses shows here
        with torch.no_grad():
            fields = [None if d is None else torch.stack([getattr(check, f)] * M)
                      for f, d in zip(FIELDS, batched_dims)]  # each (M, B, ...)
            params, buffers = stack(own), stack(own_buffers)
        grads, losses = grads_of(params, buffers, *fields)
    except RuntimeError as err:
        raise Unstackable(f"its loss does not run under vmap: {str(err).splitlines()[0][:160]}") from err
    if exact:
        gap = one_by_one_gap(recipes, own, check, grads, losses)
        if gap is not None:
            mode = "" if mkl.strict() is not False else "; MKL ran before iclbench was imported, so not in its strict mode"
            raise Unstackable(f"stacked gradients differ from one-by-one ones by up to {gap:.1e}{mode}; "
                              "--stack-seeds close accepts float rounding")
    opts = [adam(r.model, r.lr, cfg) for r in recipes]
    streams = [task_stream(r.task, cfg, r.generator, r.device, r.dtype) for r in recipes]
    trainees = [Trainee(r.model, r.loss_fn, opt, held_out_set(r.task, cfg, r.generator, r.device, r.dtype), r.monitors,
                        TrainResult(), track_training(r.desc, r.task, cfg.model_dump(), r.generator), r.on_step)
                for r, opt in zip(recipes, opts)]

    def gradients(step: int) -> torch.Tensor:
        """Every model's gradients of its own batch, taken inside vmap, set as its `.grad`; (M,) losses."""
        episodes = [next_batch(step) for next_batch in streams]
        fields = [None if d is None else torch.stack([getattr(e, f) for e in episodes]) for f, d in
                  zip(FIELDS, batched_dims)]  # each (M, B, ...)
        with torch.no_grad():
            params, buffers = stack(own), stack(own_buffers)
        grads, losses = grads_of(params, buffers, *fields)  # name -> (M, ...) gradients; (M,) losses
        for m, opt in enumerate(opts):
            opt.zero_grad(set_to_none=True)
            for n, p in own[m].items():
                p.grad = grads[n][m]
        return losses.detach()

    start = time.perf_counter()
    share = lambda: (time.perf_counter() - start) / M  # noqa: E731  each seed's share of the stack's wall time

    def save_all(step: int, done: bool = False, seconds: float | None = None) -> None:
        for r, t in zip(recipes, trainees):
            save(r, t.opt, step, t.result, done, share() if seconds is None else seconds)

    with TrainProgress(cfg.steps, f"{first.desc} ({M} seeds stacked)") as progress:
        step = run_steps(trainees, cfg, 0, gradients, progress, save_all)
        seconds = share()  # M seeds trained in one wall time: each is charged its share
        for t in trainees:
            t.result.seconds = seconds
        save_all(step, done=True, seconds=seconds)
        losses = " ".join(f"{t.result.curve[-1]['eval_loss']:.4g}" for t in trainees if t.result.curve)
        progress.say(f"trained {step} steps in {duration(seconds * M)}, held-out losses {losses}")
    return [t.result for t in trainees]


def one_by_one_gap(recipes: list[Recipe], own: list[dict[str, torch.Tensor]], batch: Episode,
                   grads: dict[str, torch.Tensor], losses: torch.Tensor) -> float | None:
    """None when the stacked losses (M,) and gradients (name -> (M, ...)) on `batch` are bit for
    bit each model's own eager ones; else the largest difference."""
    gaps = []
    for m, r in enumerate(recipes):
        leaves = list(own[m].values())
        loss = r.loss_fn(r.model, batch)
        alone = torch.autograd.grad(loss, leaves, allow_unused=True)  # None: a parameter the loss does not use
        pairs = [(losses[m], loss.detach())] + [(grads[n][m], torch.zeros_like(p) if a is None else a)
                                                for (n, p), a in zip(own[m].items(), alone)]
        gaps += [float((x - y).abs().max()) for x, y in pairs if not torch.equal(x, y)]
    return max(gaps) if gaps else None


@contextlib.contextmanager
def one_thread():
    """CPU kernels on one thread within this block. A multi-threaded product splits its work by
    the operands' sizes, so a stacked batch and a single model's split it differently; on one
    thread (how `reproduce` trains, one process per training) the bits do not depend on that."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stack(tensors: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The models' tensors of each name stacked along a new leading model dimension: name -> (M, ...)."""
    return {name: torch.stack([t[name] for t in tensors]) for name in tensors[0]}


def save(r: Recipe, opt: torch.optim.Optimizer, step: int, result: TrainResult, done: bool, seconds: float) -> None:
    """A model's checkpoint in `meta_train`'s format, so evaluation loads it and a one-by-one run resumes it."""
    if r.checkpoint is not None:
        r.checkpoint.save(checkpoint_state(r.model, opt, step, result.curve, r.generator, done, seconds))
