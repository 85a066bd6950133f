"""Many small models at once: M seeds of one configuration trained as one stacked model
(`iclbench.stacked`, what `reproduce --stack-seeds` runs) against training them one by one.

    python benchmarks/stacked_seeds.py [--seeds 3] [--steps 20] [--device cpu] [--threads 1] [--close]

For each configuration: the seconds of M one-by-one fits and of the stacked one (each the whole
`fit`: model building, held-out evaluations and monitors included), the speed-up, and the largest difference between
a seed's stacked and one-by-one weights at the end: 0 on a CPU, where every built-in learner
stacks bit for bit (`iclbench.stacked`). Without --close a configuration that would not be bit
for bit trains one by one, said under the table; with it (`--stack-seeds close`) it stacks to
float rounding (on CUDA, say). On a CPU stacking gains nothing (0.71x to 0.98x on one thread);
on a GPU, where one small model leaves the device idle, it is the point.
"""

from __future__ import annotations

import argparse
import time

import torch

from iclbench.catalog import default_catalog
from iclbench.config import parse_spec
from iclbench.runner import fit_for_evaluation
from iclbench.seeding import resolve_device
from iclbench.stacked import train_recipes
from iclbench.training import capturing_trainings

CONFIGS = [("lsa", "linear-regression", 2048), ("lsa[layers=3]", "linear-regression", 2048),
           ("seq-tf", "lds", 256), ("seq-tf[layers=4]", "lds", 256), ("seq-tf[attention=mesa]", "lds", 256),
           ("causal-tf", "garg-linear", 64)]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads (default 1: how reproduce trains, and how exact stacking runs on a CPU)")
    ap.add_argument("--close", action="store_true", help="accept float rounding, as --stack-seeds close")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device, catalog, seeds = resolve_device(args.device), default_catalog(), list(range(args.seeds))
    print(f"| learner | batch | one by one, s ({args.seeds} seeds, {args.steps} steps) | stacked, s | speed-up | "
          "max weight gap |")
    print("|---|---|---|---|---|---|")
    warm = catalog.learners["lsa"]({"train": {"steps": 2, "batch_size": 64, "eval_tasks": 64, "eval_every": 1,
                                              "checkpoint_every": 1}})
    fit_for_evaluation(warm, catalog.tasks["linear-regression"](), 0, device)  # one-time start-up costs, untimed
    notes: list[str] = []
    for spec, task_name, batch in CONFIGS:
        name, overrides = parse_spec(spec)
        overrides["train"] = {"steps": args.steps, "batch_size": batch, "eval_tasks": 256, "eval_every": args.steps,
                              "checkpoint_every": args.steps}
        task = catalog.tasks[task_name]()
        start = time.perf_counter()
        alone = []
        for seed in seeds:
            alone.append(catalog.learners[name](overrides))
            fit_for_evaluation(alone[-1], task, seed, device)
        sync(device)
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        with capturing_trainings() as recipes:  # each seed's fit up to its training: model, monitors
            for seed in seeds:
                fit_for_evaluation(catalog.learners[name](overrides), task, seed, device)
        said = []
        train_recipes(recipes, said.append, exact=not args.close)
        notes += said
        sync(device)
        stacked = time.perf_counter() - start
        gap = max(float((weights(a.model) - weights(r.model)).abs().max()) for a, r in zip(alone, recipes))
        print(f"| {spec} | {batch} | {one_by_one:.2f} | {stacked:.2f} | {one_by_one / stacked:.2f}x | {gap:.1e} |",
              flush=True)
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
