"""TunedLearner: one skeleton for every learner whose hyperparameters are fixed or tuned in fit()."""

from __future__ import annotations

import pytest
import torch

from iclbench.api import catalog as load_catalog
from iclbench.plugin_api import TunedLearner

TUNED = {"ridge": ("lam",), "online-ridge": ("lam",), "online-gd": ("eta",), "online-gdpp": ("eta", "gamma"),
         "kernel-ridge": ("bandwidth", "lam"), "kernel-smoother": ("bandwidth",), "lasso": ("alpha",)}


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_the_tuned_learners_share_the_skeleton(cat):
    found = {name: cat.learners[name].tuned for name in cat.learners if issubclass(cat.learners[name], TunedLearner)}
    assert found == TUNED


@pytest.mark.parametrize("name", ["ridge", "kernel-smoother", "online-gdpp"])
def test_predict_before_fit_names_what_is_missing(cat, name):
    learner = cat.learners[name]()
    task = cat.tasks["lds" if name.startswith("online") else "linear-regression"]()
    episode = task.sample(4, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    missing = ", ".join(TUNED[name])
    with pytest.raises(RuntimeError, match=f"^{name}: {missing} (is|are) not set; call fit"):
        learner.predict(episode)


def test_fixed_values_are_kept_free_ones_tuned_and_refits_start_from_the_config(cat):
    task = cat.tasks["linear-regression"]({"noise_std": 0.5})
    fixed = cat.learners["kernel-ridge"]({"lam": 0.1, "tune_tasks": 256})
    fixed.fit(task, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert fixed.lam == 0.1 and fixed.bandwidth > 0
    ridge = cat.learners["ridge"]({"tune_tasks": 512})
    ridge.fit(task, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    tuned = ridge.lam
    # noise 0.5 on a unit-variance teacher: the tuned lambda is well above the grid's floor
    assert ridge.hyperparameters() == {"lam": tuned} and tuned >= 1e-3
    ridge.lam = 123.0  # a refit starts from the config again, not from the last fit
    ridge.fit(task, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert ridge.lam == tuned
