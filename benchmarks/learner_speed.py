"""Meta-training step time of the trained learners, eager and compiled: where reproduction time goes.

    python benchmarks/learner_speed.py [--threads 1] [--steps 60] [--learners lsa,copy-tf,...]

Each learner trains on its paper suite's tasks at batch 2048 through the core loop (fresh
tasks, Adam, clipping); the figure is milliseconds per optimiser step, median of the timed
steps after warm-up (and compilation). With `--threads 1` it is what each `reproduce --jobs`
worker sees; the projection multiplies by the `full` budget's steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from iclbench.config import parse_spec, split_top_level
from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.reproduce import with_budget
from iclbench.training import compiled_training, step_loss

SUITES = {"copy-tf": "alternating", "mlp-gd": "sine", "mlp-lsa": "sine"}
DEFAULT = ["lsa", "lsa[layers=2,recurrent=true]", "lsa[layers=5,clip=10]", "softmax-tf", "softmax-tf[heads=2]",
           "layernorm-tf", "copy-tf", "mlp-gd", "mlp-lsa"]


def step_ms(catalog, label: str, suite: str, steps: int, compile_: bool) -> float:
    """Median ms per training step of `label` (its budgeted config) on `suite`'s training tasks."""
    name, overrides = parse_spec(label)
    learner = catalog.learners[name](overrides)
    task = catalog.suites.load(suite, catalog).train
    gen = torch.Generator().manual_seed(0)
    probe = task.sample(1, generator=gen, device="cpu")
    extra = 0 if learner.token_format == "pairs" else probe.tokens.shape[-1] - probe.dx - probe.dy
    model = learner.build_model(probe.dx, probe.dy, extra)
    cfg = learner.config.train
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(cfg.beta1, cfg.beta2))
    with compiled_training(compile_):
        loss_fn = step_loss(learner.loss)
    times = []
    for i in range(steps + 5):
        start = time.perf_counter()
        loss = loss_fn(model, task.sample(cfg.batch_size, generator=gen, device="cpu"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--learners", default=",".join(DEFAULT), help="comma-separated specs as in paper.toml")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    catalog = build_catalog(make_plugin_manager())
    budget = catalog.reproductions["paper"]().spec().budgets["full"]
    specs = [s.strip() for s in split_top_level(args.learners)]
    print(f"{args.threads} thread(s); ms per step at batch 2048; minutes projected at the full budget's steps")
    print("| learner | steps | eager ms | compiled ms | eager min | compiled min |\n|---|---|---|---|---|---|")
    for spec in specs:
        label = with_budget(spec, budget, catalog)
        n = budget.train_config(spec)["steps"]
        suite = SUITES.get(parse_spec(spec)[0], "linear")
        eager, comp = (step_ms(catalog, label, suite, args.steps, c) for c in (False, True))
        print(f"| {spec} | {n} | {eager:.1f} | {comp:.1f} | {eager * n / 6e4:.1f} | {comp * n / 6e4:.1f} |", flush=True)


if __name__ == "__main__":
    main()
