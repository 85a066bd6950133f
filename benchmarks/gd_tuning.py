"""Tuning GD / GD++ comparators: seconds per fit and the loss of the tuned rates on 10^5 fresh
evaluation tasks, against the zero predictor, for three seeds.

    python benchmarks/gd_tuning.py [--specs "gd++[steps=5,per_step=true]" ...] [--eval-tasks 100000]
"""

from __future__ import annotations

import argparse
import time

import torch

from iclbench.api import catalog as load_catalog
from iclbench.config import parse_spec
from iclbench.runner import fit_for_evaluation
from iclbench.seeding import generator

SPECS = ["gd", "gd[steps=5]", "gd++[steps=2]", "gd++[steps=5]", "gd[steps=5,per_step=true]",
         "gd++[steps=5,per_step=true]", "gd++[steps=5,per_step=true,clip=10]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="*", default=SPECS)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--eval-tasks", type=int, default=100_000)
    args = ap.parse_args()
    cat, cpu = load_catalog(), torch.device("cpu")
    task = cat.tasks["linear-regression"]()
    print(f"{'learner':40s} seed  fit s   eval loss  zero loss  chosen")
    for spec in args.specs:
        name, overrides = parse_spec(spec)
        for seed in args.seeds:
            learner = cat.learners[name](overrides)
            start = time.perf_counter()
            fit_for_evaluation(learner, task, seed, cpu)
            seconds = time.perf_counter() - start
            ev = task.sample(args.eval_tasks, generator=generator(cpu, seed, "benchmark-eval"), device=cpu)
            with torch.no_grad():
                loss = float(0.5 * (learner.predict(ev) - ev.query_y).pow(2).sum(-1).mean())
            zero = float(0.5 * ev.query_y.pow(2).sum(-1).mean())
            chosen = learner.fit_info().get("tuning", {}).get("chosen", "")
            print(f"{spec:40s} {seed:4d} {seconds:6.2f} {loss:11.5f} {zero:10.4f}  {chosen}", flush=True)


if __name__ == "__main__":
    main()
