"""Trained Transformers beside GD / GD++ on the `linear` suite (the paper's Sec. 4 comparisons).

    python benchmarks/transformers_linear.py [--seeds 0,1,2] [--device auto] [--out benchmarks/results/linear]

Trains (or reuses from the checkpoint cache) each Transformer, evaluates all learners on the
same tasks with alignment against gd and against gd++, then prints both leaderboards.
"""

from __future__ import annotations

import argparse
import sys

from iclbench.cli import main as iclbench

STEPS = 5000
LEARNERS = [
    "gd", "gd[steps=2]", "gd++[steps=2]", "gd[steps=5]", "gd[steps=5,per_step=true]", "gd++[steps=5,per_step=true]",
    "lsa",
    "lsa[layers=2,recurrent=true]",
    "lsa[layers=5]",
    "softmax-tf", "softmax-tf[heads=2]",
    "layernorm-tf",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-tasks", default="10000")
    ap.add_argument("--out", default="benchmarks/results/linear")
    ap.add_argument("--steps", type=int, default=STEPS, help="training steps of every Transformer")
    args = ap.parse_args()
    learners = ",".join(LEARNERS)
    common = ["--suite", "linear", "--seeds", args.seeds, "--device", args.device, "--n-tasks", args.n_tasks,
              "--out", args.out, "--learners", learners,
              "--learner-config", f"lsa:train.steps={args.steps}",
              "--learner-config", f"softmax-tf:train.steps={args.steps}",
              "--learner-config", f"layernorm-tf:train.steps={args.steps}"]
    for ref in ("gd", "gd[steps=2]", "gd++[steps=2]"):
        code = iclbench(["evaluate", *common, "--align-to", ref])
        if code:
            sys.exit(code)


if __name__ == "__main__":
    main()
