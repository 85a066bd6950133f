"""Copying circuits and deep-feature regression (the paper's Sec. 5), 3 seeds.

    python benchmarks/nonlinear.py [--seeds 0,1,2] [--device auto] [--out benchmarks/results/nonlinear]

1. `copy-tf` (softmax then linear layer on alternating tokens) beside `gd` (1 step) and the
   `copy-gd` construction on the same tasks, and the training step at which the copy
   dependence rises relative to the step at which the loss drops.
2. `mlp-lsa` beside `mlp-gd`, `kernel-ridge`, `kernel-smoother` and `least-squares` on sines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iclbench.cli import main as iclbench
from iclbench.store import read_records


def rise_step(curve: list[dict], key: str, fraction: float = 0.5) -> int | None:
    """First step at which `key` has covered `fraction` of its total change over training."""
    first, last = curve[0][key], curve[-1][key]
    for row in curve:
        if abs(row[key] - first) >= fraction * abs(last - first):
            return row["step"]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-tasks", default="10000")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--out", default="benchmarks/results/nonlinear")
    args = ap.parse_args()
    common = ["--seeds", args.seeds, "--device", args.device, "--n-tasks", args.n_tasks, "--out", args.out]
    runs = [
        ["--suite", "alternating", "--learners", "zero,gd,copy-gd,copy-tf", "--learner-config", f"copy-tf:train.steps={args.steps}"],
        ["--suite", "sine", "--learners", "zero,least-squares,kernel-smoother,kernel-ridge,mlp-gd,mlp-lsa",
         "--learner-config", f"mlp-gd:train.steps={args.steps}", "--learner-config", f"mlp-lsa:train.steps={args.steps}"],
    ]
    for run in runs:
        if code := iclbench(["evaluate", *common, *run]):
            sys.exit(code)
    print("\nCopy dependence against loss (copy-tf): step where each covered half its change")
    for r in read_records(Path(args.out)):
        if r["learner"] == "copy-tf":
            curve = r["fit_info"]["curve"]
            print(json.dumps({"seed": r["seed"], "loss_drop_step": rise_step(curve, "eval_loss"),
                              "copy_rise_step": rise_step(curve, "copy_next"),
                              "final_copy_next": round(curve[-1]["copy_next"], 3),
                              "final_copy_other": round(curve[-1]["copy_other"], 3)}))


if __name__ == "__main__":
    main()
