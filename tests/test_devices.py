"""Every registered learner fits and predicts on every available device: finite predictions of
the right shape on the task's device, and on CUDA the same numbers as on the CPU (closed forms
to float32 precision, trained models from the same seed within their training noise).

The CUDA cases run where CUDA is present and are skipped with the reason otherwise; the CPU
cases double as a check that every learner runs end to end at a tiny budget."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from iclbench.catalog import default_catalog
from iclbench.config import parse_spec
from iclbench.runner import check_output, fit_for_evaluation

TINY_TRAINING = "train.steps=3,train.batch_size=16,train.eval_tasks=16,train.eval_every=1,train.checkpoint_every=1"
TASK_OF = {  # learners that need a task other than linear regression, and its config
    "copy-gd": ("alternating", {}), "copy-tf": ("alternating", {}),
    "mlp-gd": ("sine", {}), "mlp-lsa": ("sine", {}),
    "seq-tf": ("lds", {"T": 12}), "online-gd": ("lds", {"T": 12}), "online-gdpp": ("lds", {"T": 12}),
    "online-ridge": ("lds", {"T": 12}), "kalman": ("lds", {"T": 12}),
    "causal-tf": ("garg-linear", {"d": 5, "N": 10}), "dmmse": ("garg-linear", {"d": 5, "N": 10, "num_tasks": 4}),
}
FAST = {  # options that keep a fit to a second or so; trainable learners also get TINY_TRAINING
    "gd": "tune_tasks=256", "gd++": "tune_tasks=256", "online-gd": "tune_tasks=64", "online-gdpp": "tune_tasks=64",
    "online-ridge": "tune_tasks=64", "ridge": "tune_tasks=256", "kernel-ridge": "tune_tasks=256",
    "kernel-smoother": "tune_tasks=256", "relu-nn": "steps=20", "boosting": "n_estimators=5",
    "causal-tf": "layers=1,width=16,curriculum=false",
}

CATALOG = default_catalog()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="CUDA is not available on this machine"))]


def tiny(name: str):
    """The learner at a tiny budget, from its spec as the CLI parses it."""
    options = [FAST.get(name, "")]
    if "train" in CATALOG.learners[name].Config.model_fields:
        options.append(TINY_TRAINING)
    text = ",".join(o for o in options if o)
    return CATALOG.learners[name](parse_spec(f"{name}[{text}]")[1] if text else {})


def fit_and_predict(name: str, device: str) -> torch.Tensor:
    task_name, config = TASK_OF.get(name, ("linear-regression", {}))
    task = CATALOG.tasks[task_name](config)
    learner = tiny(name)
    torch.manual_seed(0)
    fit_for_evaluation(learner, task, seed=0, device=torch.device(device))
    episode = task.sample(32, generator=torch.Generator(device=device).manual_seed(1), device=device)
    with torch.no_grad():
        pred = check_output(learner, episode, learner.predict(episode))
    assert pred.device.type == torch.device(device).type and pred.shape == episode.query_y.shape
    assert torch.isfinite(pred).all()
    return pred


NEEDS = {"boosting": ("xgboost", "sklearn")}  # optional libraries, any one of which will do (the `trees` extra)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CATALOG.learners))
def test_every_learner_fits_and_predicts_on(name, device):
    if name in NEEDS and not any(importlib.util.find_spec(m) for m in NEEDS[name]):
        pytest.skip(f"{name} needs one of {', '.join(NEEDS[name])} (pip install iclbench[trees])")
    pred = fit_and_predict(name, device)
    if device == "cuda":
        on_cpu = fit_and_predict(name, "cpu")
        trained = "train" in CATALOG.learners[name].Config.model_fields
        tol = 0.05 if trained else 1e-3  # three Adam steps amplify rounding; closed forms do not
        assert torch.allclose(pred.cpu(), on_cpu, rtol=tol, atol=tol * on_cpu.abs().max().item())
