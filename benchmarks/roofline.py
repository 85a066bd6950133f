"""Training steps against this machine's floor: for each trained model of the paper, mesa and
Garg specs (at their full budget), the arithmetic of one optimiser step, the time the same
matrix products take on their own, and the step's measured time.

    python benchmarks/roofline.py [--threads 1] [--steps 20] [--reproductions paper,mesa,garg] [--only lsa,...]
                                  [--compile] [--seeds 3] [--cores 2]

A step is what `meta_train` runs: fresh tasks from the suite's training task, the learner's
loss, backward, gradient clipping, Adam. Its learner's `fit` is run with the training captured
(`capturing_trainings`), so the model, loss and batch are exactly the reproduction's.

- `GFLOP`: matrix-product arithmetic of one step, forward and backward (torch's FlopCounterMode).
- `floor ms`: the same products (same shapes, same counts), each timed alone on fresh tensors:
  what the step would take if it did nothing but its products at this machine's rate for them.
- `step ms`: the median measured step, and `data ms` of it drawing the tasks.
- `floor / step`: 1 is the floor; below 1/3, time goes to something other than arithmetic
  (elementwise kernels, autograd bookkeeping, data generation, small-op overhead).
- `--compile`: the same step through `torch.compile` (what `reproduce --compile` trains with),
  with its own ratio.
- Per reproduction, a total: the full budget's training minutes for `--seeds` seeds spread
  over `--cores` single-threaded workers, at the measured step (eager, compiled) and at the
  floor. The floor total is a bound for these products: a wall-time goal below it needs less
  arithmetic (or faster products), not less overhead.

`--threads 1` is what each `reproduce --jobs` worker sees.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from iclbench.api import catalog as load_catalog
from iclbench.reproduce import budgeted
from iclbench.training import capturing_trainings, compiled_training, step_loss

PRODUCTS = {"mm", "bmm", "addmm", "baddbmm"}


class ProductLog(TorchDispatchMode):
    """Counts each matrix product by (op, input shapes, dtype)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in PRODUCTS:
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
            self.calls[(name, shapes, dtype)] += 1
        return func(*args, **(kwargs or {}))


def product_seconds(name: str, shapes: tuple, dtype: torch.dtype, repeats: int = 20) -> float:
    """Median seconds of one product of these shapes, alone."""
    args = [torch.randn(s, dtype=dtype) for s in shapes]
    op = getattr(torch, name)
    for _ in range(3):
        op(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        op(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trained_learners(cat, reproductions: list[str]) -> list[tuple[str, str, str, object]]:
    """(reproduction, spec, suite, budgeted LearnerSpec) of every trained learner, once each."""
    out, seen = [], set()
    for repro_name in reproductions:
        spec = cat.reproductions[repro_name]().spec()
        budget = spec.budgets["full"]
        for run in spec.runs:
            for s in run.learners:
                learner_spec = budgeted(s, budget, cat)
                if cat.learners[learner_spec.name].trains and (s, run.suite) not in seen:
                    seen.add((s, run.suite))
                    out.append((repro_name, s, run.suite, learner_spec))
    return out


def measure(cat, learner_spec, suite: str, steps: int, compile_: bool = False) -> dict[str, float]:
    """One training step of the captured recipe: its products, floor and measured time (and,
    with `compile_`, the compiled step's)."""
    learner = learner_spec.build(cat)
    task = cat.suites.load(suite, cat).train
    gen = torch.Generator().manual_seed(0)
    with capturing_trainings() as captured:
        learner.fit(task, generator=gen, device=torch.device("cpu"))
    recipe = captured[0]
    model, cfg = recipe.model, recipe.cfg
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(cfg.beta1, cfg.beta2))
    stream = recipe.task

    loss_fn = recipe.loss_fn

    def step(timing: dict | None = None) -> None:
        start = time.perf_counter()
        batch = stream.sample(cfg.batch_size, generator=gen, device="cpu")
        if timing is not None:
            timing["data"] = time.perf_counter() - start
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    for _ in range(3):
        step()
    flops, log = FlopCounterMode(display=False), ProductLog()
    with flops:
        step()
    with log:
        step()
    totals, data = [], []
    for _ in range(steps):
        timing: dict = {}
        start = time.perf_counter()
        step(timing)
        totals.append(time.perf_counter() - start)
        data.append(timing["data"])
    floor = sum(n * product_seconds(name, shapes, dtype) for (name, shapes, dtype), n in log.calls.items())
    compiled = float("nan")
    if compile_:
        with compiled_training(True):
            loss_fn = step_loss(recipe.loss_fn)
        for _ in range(5):  # compilation, then warm-up
            step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        compiled = statistics.median(times) * 1e3
    return {"compiled_ms": compiled, "gflop": flops.get_total_flops() / 1e9, "floor_ms": floor * 1e3, "step_ms": statistics.median(totals) * 1e3,
            "data_ms": statistics.median(data) * 1e3, "products": sum(log.calls.values()),
            "full_steps": cfg.steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reproductions", default="paper,mesa,garg")
    ap.add_argument("--only", default="", help="comma-separated learner names to keep (e.g. lsa,copy-tf)")
    ap.add_argument("--compile", action="store_true", help="also time the step through torch.compile")
    ap.add_argument("--seeds", type=int, default=3, help="seeds in the totals")
    ap.add_argument("--cores", type=int, default=2, help="single-threaded workers in the totals")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cat = load_catalog()
    keep = {n.strip() for n in args.only.split(",") if n.strip()}
    print(f"{args.threads} thread(s); one optimiser step at each model's full-budget batch")
    print("| reproduction | learner | suite | products | GFLOP | floor ms | step ms | data ms | floor / step | "
          "compiled ms | floor / compiled | full-budget min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, dict[str, float]] = {}
    for repro, spec, suite, learner_spec in trained_learners(cat, args.reproductions.split(",")):
        if keep and learner_spec.name not in keep:
            continue
        m = measure(cat, learner_spec, suite, args.steps, args.compile)
        print(f"| {repro} | {spec} | {suite} | {m['products']} | {m['gflop']:.3f} | {m['floor_ms']:.1f} | "
              f"{m['step_ms']:.1f} | {m['data_ms']:.1f} | {m['floor_ms'] / m['step_ms']:.2f} | "
              f"{m['compiled_ms']:.1f} | {m['floor_ms'] / m['compiled_ms']:.2f} | "
              f"{m['step_ms'] * m['full_steps'] / 6e4:.0f} |", flush=True)
        total = totals.setdefault(repro, {"step_ms": 0.0, "compiled_ms": 0.0, "floor_ms": 0.0})
        for key in total:
            total[key] += m[key] * m["full_steps"]
    spread = args.seeds / args.cores / 6e4  # ms of one seed's steps -> wall minutes on the workers
    for repro, total in totals.items():
        print(f"\n{repro}: full-budget training, {args.seeds} seed(s) on {args.cores} single-threaded worker(s): "
              f"{total['step_ms'] * spread:.0f} min eager, {total['compiled_ms'] * spread:.0f} min compiled, "
              f"{total['floor_ms'] * spread:.0f} min at the floor (a perfect packing of trainings over workers)")


if __name__ == "__main__":
    main()
