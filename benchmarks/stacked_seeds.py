"""Many small models at once: M seeds of one configuration trained as one model with stacked
parameters (torch.func.stack_module_state + vmap), against training them one by one.

    python benchmarks/stacked_seeds.py [--seeds 3] [--steps 10] [--device cpu] [--threads 1]

For each configuration: seconds per step of M one-by-one trainings (summed) and of the stacked
one, the speed-up, and how far the stacked weights end from the one-by-one weights after
`--steps` Adam steps (each seed its own task stream, per-seed gradient-norm clipping, as the
training loop does). On this 2-core CPU the stacked step gains little at batch 2048; on a GPU,
where one small model leaves the device idle, it is the point. The weights agree to float
rounding, not bit for bit: vmap's batched backward sums the weight gradients in another order.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from iclbench.catalog import default_catalog
from iclbench.config import parse_spec
from iclbench.episode import Episode
from iclbench.seeding import resolve_device

CONFIGS = [("lsa", "linear-regression", 2048), ("lsa[layers=3]", "linear-regression", 2048),
           ("seq-tf", "lds", 256), ("seq-tf[layers=4]", "lds", 256)]
FIELDS = ("context_x", "context_y", "query_x", "query_y", "tokens")


class Objective(torch.nn.Module):
    """The training loss of `model` as a module of the episode's tensors, so vmap can stack it."""

    def __init__(self, model: torch.nn.Module, loss_fn, token_format: str | None) -> None:
        super().__init__()
        self.model, self.loss_fn, self.token_format = model, loss_fn, token_format

    def forward(self, cx, cy, qx, qy, tokens):
        episode = Episode(cx, cy, qx, qy, tokens=tokens, token_format=self.token_format)
        return self.loss_fn(self.model, episode)


def recipe(catalog, spec: str, task, device):
    """(model builder by seed, loss function) of a trained learner spec."""
    from iclbench_plugins.sequence_transformer import sequence_loss

    name, overrides = parse_spec(spec)
    learner = catalog.learners[name](overrides)
    probe = task.sample(1, generator=torch.Generator(device=device).manual_seed(0), device=device)

    def build(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = learner.build_model(probe.dx) if name == "seq-tf" else learner.build_model(probe.dx, probe.dy)
        return model.to(device)

    return build, (sequence_loss if name == "seq-tf" else learner.loss), probe.token_format


def clip_per_model(grads: list[torch.Tensor], max_norm: float) -> None:
    """Global-norm clipping of each model's slice of the stacked gradients (M, ...), in place."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)  # (M, P)
    coef = (max_norm / (torch.linalg.vector_norm(norms, dim=1) + 1e-6)).clamp(max=1.0)  # (M,)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_by_one(build, loss_fn, task, seeds, steps, batch, device) -> tuple[list[torch.nn.Module], float]:
    """M trainings in turn; seconds per step summed over them (median step)."""
    models, per_step = [], []
    for seed in seeds:
        model = build(seed)
        gen = torch.Generator(device=device).manual_seed(1000 + seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
        times = []
        for _ in range(steps):
            episode = task.sample(batch, generator=gen, device=device)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model, episode).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            sync(device)
            times.append(time.perf_counter() - start)
        models.append(model)
        per_step.append(statistics.median(times[1:] or times))
    return models, sum(per_step)


def stacked(build, loss_fn, token_format, task, seeds, steps, batch, device) -> tuple[dict, float]:
    """The same M trainings as one vmapped model; seconds per stacked step (median)."""
    objectives = [Objective(build(seed), loss_fn, token_format) for seed in seeds]
    params, buffers = stack_module_state(objectives)  # each (M, ...)
    base = copy.deepcopy(objectives[0])
    gens = [torch.Generator(device=device).manual_seed(1000 + seed) for seed in seeds]
    opt = torch.optim.Adam(list(params.values()), lr=1e-3, betas=(0.9, 0.98))
    losses_of = None
    times = []
    for _ in range(steps):
        episodes = [task.sample(batch, generator=g, device=device) for g in gens]
        batched = [None if getattr(episodes[0], f) is None else torch.stack([getattr(e, f) for e in episodes])
                   for f in FIELDS]  # each (M, B, ...)
        if losses_of is None:
            losses_of = vmap(lambda p, b, *x: functional_call(base, (p, b), x),
                             in_dims=(0, 0, *[None if x is None else 0 for x in batched]))
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        losses_of(params, buffers, *batched).sum().backward()  # (M,) losses; models independent
        clip_per_model([p.grad for p in params.values()], 10.0)
        opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return params, statistics.median(times[1:] or times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, catalog, seeds = resolve_device(args.device), default_catalog(), list(range(args.seeds))
    print(f"| learner | batch | one by one, ms/step ({args.seeds} seeds) | stacked, ms/step | speed-up | max weight gap |")
    print("|---|---|---|---|---|---|")
    for spec, task_name, batch in CONFIGS:
        task = catalog.tasks[task_name]()
        build, loss_fn, token_format = recipe(catalog, spec, task, device)
        models, alone = one_by_one(build, loss_fn, task, seeds, args.steps, batch, device)
        params, together = stacked(build, loss_fn, token_format, task, seeds, args.steps, batch, device)
        with torch.no_grad():
            gap = max(float((p - params[f"model.{n}"][i]).abs().max())
                      for i, m in enumerate(models) for n, p in m.named_parameters())
        print(f"| {spec} | {batch} | {1000 * alone:.1f} | {1000 * together:.1f} | {alone / together:.2f}x | {gap:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
