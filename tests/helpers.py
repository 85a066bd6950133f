"""Small helpers shared by the tests: seeded generators, float64 episodes, fitted learners."""

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
