"""What a learner hands back is checked before anything is stored: predictions of the right
shape, device and dtype, and `hyperparameters()` / `fit_info()` that JSON can hold.

A wrong shape would broadcast into a wrong loss, and a tensor in the hyperparameters would stop
the whole run when its record is written; both are the learner's failure, named, instead.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from iclbench.episode import Episode
from iclbench.learner import Learner


class LearnerOutputError(ValueError):
    """A learner's `predict` returned something other than a (B, dy) tensor on the episode's
    device and dtype."""


def check_output(learner: Learner, episode: Episode, pred: object) -> torch.Tensor:
    """`pred` if it is a (B, dy) tensor on the episode's device and dtype; else an error saying
    what was expected and what came back (a (B,) output would broadcast into a wrong loss)."""
    want = (episode.batch_size, episode.dy)
    dtype = episode.context_x.dtype
    where = f"learner {learner.label!r}: predict() returned"
    if not isinstance(pred, torch.Tensor):
        raise LearnerOutputError(f"{where} a {type(pred).__name__}, expected a tensor of shape {want}")
    if tuple(pred.shape) != want:
        raise LearnerOutputError(f"{where} shape {tuple(pred.shape)}, expected (B, dy) = {want}")
    if pred.device != episode.device:
        raise LearnerOutputError(f"{where} a tensor on {pred.device}, expected the episode's device {episode.device}")
    if pred.dtype != dtype:
        raise LearnerOutputError(f"{where} dtype {pred.dtype}, expected the episode's dtype {dtype}")
    return pred


def not_json(value: Any, path: str) -> str | None:
    """The path of the first part of `value` that JSON cannot hold (a tensor, an object), or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            bad = f"{path}[{k!r}]: a key of type {type(k).__name__}" if not isinstance(k, str) else not_json(v, f"{path}[{k!r}]")
            if bad:
                return bad
        return None
    if isinstance(value, (list, tuple)):
        return next((b for i, v in enumerate(value) if (b := not_json(v, f"{path}[{i}]"))), None)
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    return f"{path}: a {type(value).__name__}"


def learner_info(learner: Learner) -> dict[str, Any]:
    """The learner's `hyperparameters()` and `fit_info()`, checked to be JSON objects (they are
    stored in every record); a LearnerOutputError names the method and the bad part."""
    out = {}
    for method in ("hyperparameters", "fit_info"):
        value = getattr(learner, method)()
        bad = f"{method}(): a {type(value).__name__}, not a dict" if not isinstance(value, dict) else not_json(value, f"{method}()")
        if bad:
            raise LearnerOutputError(f"learner {learner.label!r}: {bad}, which is not JSON")
        out[method] = copy.deepcopy(value)  # a private copy, numbers kept numbers: later changes do not leak in
    return out
