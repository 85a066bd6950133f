"""Fit and predict time, and loss, of the Garg et al. baselines on their own suites.

    python benchmarks/function_classes.py [--n-tasks 2000] [--device cpu]

Per (suite, learner): seconds to fit on the suite's training tasks, seconds to predict
`--n-tasks` in-distribution tasks (batched as `evaluate` does), and the mean loss with
its 95 % CI over tasks.
"""

from __future__ import annotations

import argparse
import time

import torch

from iclbench.catalog import build_catalog
from iclbench.config import parse_spec
from iclbench.metrics import mean_ci95, task_losses
from iclbench.plugins import make_plugin_manager
from iclbench.runner import fit_for_evaluation, predict_chunked
from iclbench.seeding import generator, resolve_device

SUITES = {
    "garg-linear": ["least-squares", "averaging", "knn", "lasso", "bayes-ridge[noise_std=0.0,prior_std=1.0]"],
    "garg-sparse": ["least-squares", "lasso"],
    "garg-relu": ["least-squares", "knn", "relu-nn"],
    "garg-tree": ["least-squares", "knn", "tree", "tree[max_depth=None]"],
    "garg-pool": ["least-squares", "bayes-ridge", "dmmse"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tasks", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    catalog = build_catalog(make_plugin_manager())
    print(f"| suite | learner | fit s | predict s ({args.n_tasks} tasks) | loss |")
    print("|---|---|---|---|---|")
    for suite_name, specs in SUITES.items():
        suite = catalog.suites.load(suite_name, catalog)
        ev = next(e for e in suite.evals if e.in_distribution)
        ep = ev.task.sample(args.n_tasks, generator=generator(device, 0, "eval", suite_name), device=device)
        for spec in specs:
            name, overrides = parse_spec(spec)
            learner = catalog.learners[name](overrides)
            start = time.perf_counter()
            fit_for_evaluation(learner, suite.train, 0, device)
            fit = time.perf_counter() - start
            start = time.perf_counter()
            with torch.no_grad():
                pred = predict_chunked(learner, ep, 1024)
            predict = time.perf_counter() - start
            loss, ci = mean_ci95(task_losses(pred, ep.query_y))
            print(f"| {suite_name} | {spec} | {fit:.2f} | {predict:.2f} | {loss:.4g} ± {ci:.2g} |", flush=True)


if __name__ == "__main__":
    main()
