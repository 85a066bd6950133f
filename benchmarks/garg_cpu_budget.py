"""Searching for a CPU budget at which Garg et al.'s linear-regression finding can be tested: a
scaled `causal-tf` (dimension d, N context points, model size, curriculum, steps) trained on
`garg-linear` and scored against least squares at every context length.

    python benchmarks/garg_cpu_budget.py --d 5 --N 20 --steps 6000 --out /tmp/garg-cpu
    python benchmarks/garg_cpu_budget.py --report /tmp/garg-cpu      # an earlier run's numbers

It prints, per seed: the wall time of the training, the step at which the held-out query loss
first fell below 90 % of the zero predictor's (the plateau escape), and the Transformer's
normalised error minus least squares' at every k from 2d on (the finding: within 0.1).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = """name = "garg-cpu"
description = "Garg et al.'s linear regression scaled for a CPU: d = {d}, {N} context points"

[train]
task = "garg-linear"
config = {{ d = {d}, N = {N} }}

[[eval]]
label = "standard"
task = "garg-linear"
config = {{ d = {d}, N = {N} }}
in_distribution = true
prefix_curve = true
"""


def spec(a: argparse.Namespace) -> str:
    """The causal-tf spec: the model size and a curriculum (the defaults, for d = 5 and N = 20,
    reach the full task at step 1250 of 6000, as Garg's reaches it early, at 30 000 of 500 000)."""
    return (f"causal-tf[layers={a.layers},width={a.width},heads={a.heads},dims_start={a.dims_start},dims_inc=1,"
            f"dims_interval={a.interval},points_start={a.points_start},points_inc={a.points_inc},"
            f"points_interval={a.interval},train.steps={a.steps},train.eval_every={a.eval_every},"
            f"train.checkpoint_every={a.eval_every}]")


def report(out: Path, d: int | None = None) -> None:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    by = {(r["label"].split("[")[0], r["seed"]): r for r in records}
    for (name, seed), r in sorted(by.items()):
        if name != "causal-tf":
            continue
        d = d or r["task_config"]["d"]
        ls = by[("least-squares", seed)]["prefix_curve"]["error"]
        tf = r["prefix_curve"]["error"]
        curve = r["fit_info"]["curve"]
        zero = 0.5 * d  # the zero predictor's query loss, 0.5 E|y|^2 with w, x ~ N(0, I_d)
        escape = next((row["step"] for row in curve if row.get("query_loss", 1e9) < 0.9 * zero), None)
        gaps = [t - l for t, l in zip(tf[2 * d - 1:], ls[2 * d - 1:])]
        print(f"seed {seed}: trained in {r['fit_seconds']:.0f} s; plateau escape at step {escape}; "
              f"error - least squares for k >= 2d: max {max(gaps):+.3f}, at k = N {gaps[-1]:+.3f} "
              f"({'within' if max(gaps) < 0.1 else 'not within'} 0.1)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--N", type=int, default=20)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--dims-start", type=int, default=2, help="curriculum: live dimensions at step 0")
    p.add_argument("--points-start", type=int, default=6, help="curriculum: points (context + query) at step 0")
    p.add_argument("--points-inc", type=int, default=3, help="curriculum: points added at each increment")
    p.add_argument("--interval", type=int, default=250, help="curriculum: steps between increments")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seeds", default="0")
    p.add_argument("--n-tasks", type=int, default=1000)
    p.add_argument("--out", default="garg-cpu-results")
    p.add_argument("--report", help="only print the numbers of an earlier run's results folder")
    a = p.parse_args()
    if a.report:
        report(Path(a.report))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "garg-cpu.toml"
        suite.write_text(SUITE.format(d=a.d, N=a.N))
        cmd = ["iclbench", "evaluate", "--suite", str(suite), "--learners", f"zero,least-squares,{spec(a)}",
               "--seeds", a.seeds, "--n-tasks", str(a.n_tasks), "--out", a.out]
        print(" ".join(cmd), file=sys.stderr)
        done = subprocess.run(cmd)
    if done.returncode:
        return done.returncode
    report(Path(a.out), a.d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
