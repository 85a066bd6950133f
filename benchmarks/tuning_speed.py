"""Seconds to fit every tuned closed-form learner at its default `tune_tasks`, on the task it is
scored on (linear regression; LDS sequences for the online references), twice each: the
second fit is the one a run pays once the process is warm.

    python benchmarks/tuning_speed.py [--specs ridge kernel-ridge ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from iclbench.api import catalog as load_catalog
from iclbench.config import parse_spec
from iclbench.runner import fit_for_evaluation

SPECS = ["ridge", "kernel-ridge", "kernel-smoother", "lasso", "gd", "gd[steps=5]", "gd++[steps=2]",
         "gd[steps=5,per_step=true]", "gd++[steps=5,per_step=true]", "gd++[steps=5,per_step=true,clip=10]",
         "online-ridge", "online-gd", "online-gd[steps=2]", "online-gdpp"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="*", default=SPECS)
    args = ap.parse_args()
    cat, cpu = load_catalog(), torch.device("cpu")
    print(f"{'learner':40s} {'first s':>8s} {'warm s':>8s}")
    for spec in args.specs:
        name, overrides = parse_spec(spec)
        task = cat.tasks["lds" if name.startswith("online") else "linear-regression"]()
        times = []
        for seed in (0, 1):
            learner = cat.learners[name](overrides)
            start = time.perf_counter()
            fit_for_evaluation(learner, task, seed, cpu)
            times.append(time.perf_counter() - start)
        print(f"{spec:40s} {times[0]:8.2f} {times[1]:8.2f}", flush=True)


if __name__ == "__main__":
    main()
