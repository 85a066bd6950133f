"""Training steps per second of the sequence Transformers (causal linear, softmax, mesa,
hybrid) on the `lds` suite, and the mesa-layer's two solvers.

    python benchmarks/sequence_speed.py [--threads 1] [--steps 6] [--batch 256] [--device cpu]

Each figure is the median over `--steps` timed steps (after one warm-up) of forward, backward
and an Adam step on `--batch` fresh sequences (D = 10, 50 positions); sampling is timed apart.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from iclbench.config import parse_spec
from iclbench.seeding import resolve_device
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.transformers.sequence import SequenceTransformerLearner, sequence_loss

CONFIGS = ["seq-tf", "seq-tf[layers=2]", "seq-tf[layers=4]", "seq-tf[attention=softmax,layers=2,heads=4]",
           "seq-tf[attention=mesa,heads=4]", "seq-tf[attention=mesa,layers=2,heads=4]",
           "seq-tf[attention=hybrid,layers=2,heads=4]"]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def steps_per_second(spec: str, steps: int, batch: int, device, method: str | None = None) -> tuple[float, float]:
    """(steps/s, sampling ms per batch) of `spec`, mesa layers forced to `method` if given."""
    learner = SequenceTransformerLearner(parse_spec(spec)[1])
    model = learner.build_model(10).to(device)
    for layer in model.attn:
        layer.method = method or "auto"
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    task, gen = LinearDynamics(), torch.Generator(device=device).manual_seed(0)
    times, sampling = [], []
    for i in range(steps + 1):
        start = time.perf_counter()
        ep = task.sample(batch, generator=gen, device=device)
        sync(device)
        sampling.append(time.perf_counter() - start)
        start = time.perf_counter()
        opt.zero_grad()
        sequence_loss(model, ep).backward()
        opt.step()
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    return 1 / statistics.median(times), 1000 * statistics.median(sampling)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"| learner | mesa solver | steps/s (batch {args.batch}) | sampling ms |")
    print("|---|---|---|---|")
    for spec in CONFIGS:
        methods = ["solve", "sherman-morrison"] if "mesa" in spec or "hybrid" in spec else [None]
        for method in methods:
            rate, sample_ms = steps_per_second(spec, args.steps, args.batch, device, method)
            print(f"| {spec} | {method or '-'} | {rate:.2f} | {sample_ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
