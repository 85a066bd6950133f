"""Meta-training speed of a one-layer `lsa` against a plain PyTorch loop, timed in one run.

    python benchmarks/train_speed.py [--steps 300] [--batch-size 2048] [--device cpu]

The plain loop is what one writes first: fresh `torch.rand` tasks each step, full einsum
linear attention over every token, Adam. Both train the same model size with the same
optimiser settings; the figure is optimiser steps per second.
"""

from __future__ import annotations

import argparse
import time

import torch

from iclbench.plugins import make_plugin_manager
from iclbench.catalog import build_catalog
from iclbench.seeding import generator, resolve_device


def plain_loop(steps: int, batch: int, device: torch.device, N: int = 10, d: int = 10) -> float:
    """Steps per second of a straightforward LSA training loop."""
    D = d + 1
    params = [torch.nn.Parameter(0.01 * torch.randn(D, D, device=device)) for _ in range(4)]  # Q, K, V, P
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.98))

    def step() -> None:
        W = torch.randn(batch, 1, d, device=device)
        x = torch.rand(batch, N + 1, d, device=device) - 0.5
        y = torch.einsum("bod,bnd->bno", W, x)
        z = torch.cat([x, torch.cat([y[:, :N], torch.zeros(batch, 1, 1, device=device)], 1)], -1)
        Q, K, V, P = params
        q, k, v = z @ Q.T, z[:, :N] @ K.T, z[:, :N] @ V.T
        z = z + torch.einsum("btn,bnd->btd", torch.einsum("btd,bnd->btn", q, k), v) @ P.T / N
        loss = 0.5 * ((-z[:, -1, -1] - y[:, -1, 0]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()

    return _rate(step, steps, device)


def _rate(step, steps: int, device: torch.device) -> float:
    for _ in range(10):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def iclbench_loop(steps: int, batch: int, device: torch.device) -> float:
    """Steps per second of `lsa` trained by the core meta-training loop (no checkpoints)."""
    catalog = build_catalog(make_plugin_manager())
    task = catalog.suites.load("linear", catalog).train
    cfg = {"train": {"steps": 10, "batch_size": batch, "eval_every": 10, "eval_tasks": 256, "checkpoint_every": 10}}
    catalog.learners["lsa"](cfg).fit(task, generator=generator(device, 0, "warm"), device=device)
    learner = catalog.learners["lsa"]({**cfg, "train": {**cfg["train"], "steps": steps, "eval_every": 100, "checkpoint_every": 100}})
    start = time.perf_counter()
    learner.fit(task, generator=generator(device, 0, "train"), device=device)
    return steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    plain = plain_loop(args.steps, args.batch_size, device)
    ours = iclbench_loop(args.steps, args.batch_size, device)
    print(f"device {device}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop   {plain:8.1f} steps/s")
    print(f"iclbench lsa         {ours:8.1f} steps/s   ({ours / plain:.2f}x)")


if __name__ == "__main__":
    main()
