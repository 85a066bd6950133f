"""causal-tf: training step time at the small preset and at Garg's size, and the one-pass error
against context length beside asking the model once per prefix.

    python benchmarks/causal_tf.py [--threads 1] [--steps 5] [--tasks 500] [--device cpu]

Step time: median ms of a forward + backward + Adam step on 64 garg-linear tasks (d = 20,
40 points, 81 tokens), after one warm-up step. Prefixes: seconds for all k = 1..40 on `--tasks`
tasks, one pass (`predict_prefixes`) against 40 calls of `predict` on `episode.prefix(k)`, and
the largest difference between the two.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from iclbench.seeding import resolve_device
from iclbench_plugins.tasks.function_classes import GargLinear
from iclbench_plugins.transformers.causal import CausalTransformerLearner, causal_loss

SIZES = {"small preset": {}, "Garg's standard": {"layers": 12, "width": 256, "heads": 8}}


def step_ms(config: dict, task, steps: int, device) -> float:
    learner = CausalTransformerLearner(config)
    model = learner.build_model(task.config.d, 1, task.config.N).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    times = []
    for i in range(steps + 1):
        ep = task.sample(64, generator=gen, device=device)
        start = time.perf_counter()
        opt.zero_grad()
        causal_loss(model, ep).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def prefix_seconds(task, n_tasks: int, device) -> tuple[float, float, float]:
    learner = CausalTransformerLearner()
    learner.model = learner.build_model(task.config.d, 1, task.config.N).to(device)
    ep = task.sample(n_tasks, generator=torch.Generator(device=device).manual_seed(1), device=device)
    with torch.no_grad():
        start = time.perf_counter()
        one = learner.predict_prefixes(ep)  # (B, N, 1)
        t_one = time.perf_counter() - start
        start = time.perf_counter()
        loop = torch.stack([learner.predict(ep.prefix(k)) for k in range(1, ep.n_context + 1)], dim=1)  # (B, N, 1)
        t_loop = time.perf_counter() - start
    return t_one, t_loop, float((one - loop).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    task = GargLinear()
    print("| model | ms per step (batch 64) | 500 000 steps |")
    print("|---|---|---|")
    for name, config in SIZES.items():
        ms = step_ms(config, task, args.steps, device)
        print(f"| {name} | {ms:.0f} | {ms * 500_000 / 3.6e6:.1f} h |", flush=True)
    one, loop, diff = prefix_seconds(task, args.tasks, device)
    print(f"\nerror against context length, {args.tasks} tasks, k = 1..40: one pass {one:.2f} s, "
          f"per prefix {loop:.2f} s ({loop / one:.1f}x), largest difference {diff:.1e}")


if __name__ == "__main__":
    main()
