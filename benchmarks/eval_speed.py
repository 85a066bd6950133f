"""Evaluation time of closed-form learners on 10^5 tasks (target: under 1 s each on CPU).

    python benchmarks/eval_speed.py [--n-tasks 100000] [--device cpu] [--repeats 5]

Times `predict` on one batch of the `linear` suite's tasks, after fitting, as the median of
several repeats; sampling the tasks is timed separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.runner import predict_chunked
from iclbench.seeding import generator, resolve_device


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tasks", type=int, default=100_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--learners", default="gd,gd[steps=2],gd++[steps=2],least-squares,ridge,kernel-ridge")
    args = ap.parse_args()
    device = resolve_device(args.device)
    catalog = build_catalog(make_plugin_manager())
    task = catalog.suites.load("linear", catalog).train
    sample = lambda: task.sample(args.n_tasks, generator=generator(device, 0, "bench"), device=device)  # noqa: E731
    print(f"device {device}, {args.n_tasks} tasks, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'sampling':28s} {timed(sample, args.repeats, device):8.3f} s")
    episode = sample()
    from iclbench.config import parse_spec, split_top_level

    for spec in split_top_level(args.learners):
        name, overrides = parse_spec(spec)
        learner = catalog.learners[name](overrides)
        start = time.perf_counter()
        learner.fit(task, generator=generator(device, 0, "train"), device=device)
        fit = time.perf_counter() - start
        t = timed(lambda: predict_chunked(learner, episode, args.n_tasks), args.repeats, device)
        print(f"{learner.label:28s} {t:8.3f} s   (fit {fit:.2f} s)")


if __name__ == "__main__":
    main()
