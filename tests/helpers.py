"""Small helpers shared by the tests: seeded generators, float64 episodes, fitted learners, board records."""

from __future__ import annotations

import torch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sample64(task, n: int = 256, seed: int = 0):
    """`n` tasks drawn with a generator seeded `seed`, converted to float64."""
    return task.sample(n, generator=gen(seed), device="cpu").to(dtype=torch.float64)


def fitted(catalog, name: str, task, seed: int = 1, **config):
    """Learner `name` built with `config` and fitted on `task` with a generator seeded `seed`."""
    learner = catalog.learners[name](config)
    learner.fit(task, generator=gen(seed), device="cpu")
    return learner


def predict(learner, episode) -> torch.Tensor:
    with torch.no_grad():
        return learner.predict(episode)


def board_record(label: str, task: str, loss: float, *, suite: str = "s", seed: int = 0, group: str | None = None,
                 value: float | None = None, ind: bool = False, ref: str | None = None, ci: float = 0.01,
                 n_tasks: int = 100, **metrics) -> dict:
    """A finished record as the board reads it: `label` on `suite`'s column `task` (shift
    `group` at `value`, in distribution if `ind`), its loss with a CI, and `metrics` beside it."""
    return {"suite": suite, "label": label, "task_label": task, "group": group, "value": value,
            "in_distribution": ind, "seed": seed, "align_to": ref, "n_tasks": n_tasks,
            "metrics": {"loss": loss, "loss_ci95": ci, **metrics}}


def claim_results(records: list[dict], analyses=(), **meta):
    """A reproduction's `Results` over records and analyses held in memory, as its claims read
    them (`meta`: reproduction.json's fields, e.g. budget); an analysis is (name, result[, seed])."""
    from iclbench.reproduce import Results

    rows = [{"analysis": a[0], "config": {}, "result": a[1], "seed": a[2] if len(a) > 2 else 0} for a in analyses]
    return Results.from_records(records, rows, meta or None)
