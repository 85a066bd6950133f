"""Sequence episodes (von Oswald et al. 2023, "Uncovering mesa-optimization"): states s_1..s_T,
and the loss at every position t of predicting s_{t+1} from s_1..s_t.

A sequence is an ordinary Episode, so every pair learner reads it unchanged: the context pairs
are the transitions (s_t, s_{t+1}), t = 1..T-2, the query is s_{T-1} with target s_T, and
`tokens` holds the states the last prediction may see, s_1..s_{T-1} (token_format "sequence").
Position t is the episode of transitions 1..t-1 with query s_t.

Every learner gets a loss per position: a learner with `predict_positions(episode) -> (B, T-1, D)`
(a causal model) in one pass; one that ignores zero pairs (`prefix_by_padding`) in one batched
call, the transitions from t on zeroed; any other once per position, on all tasks at once. At
t = 1 no transition has been seen: learners asked per position then get one zero pair.

Input sensitivities per position (alignment, as the 2023a paper's at the query): at a few
positions t, the Jacobian d yhat_t / d s_t of the prediction from s_1..s_t, earlier states held
fixed; s_t counts wherever the learner reads it (the query and the last transition's target), as
a causal model cannot tell the two apart. Each is the last-position sensitivity of the sequence
cut after s_{t+1}, so every learner, causal or not, is measured by the same means.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from iclbench.episode import Episode
from iclbench.metrics import cosine_against, defined_mean_ci95, mean_ci95, task_losses
from iclbench.prefix import one_pass

SEQUENCE = "sequence"
INTERLEAVED = "interleaved"  # tokens x_1, y_1, ..., x_n, y_n, x_{n+1} (few-shot regression as a sequence): the
# episode's pairs are the (x_i, y_i) themselves, and a sequence model predicts the state after the last token
Predict = Callable[[Episode], torch.Tensor]
Sensitivity = Callable[[Any, Episode], torch.Tensor]  # (learner, episode) -> (B, dy, dx) at the query
SENSITIVITY_AT = (0.1, 0.25, 0.5, 0.75, 1.0)  # positions measured, as fractions of the last one


def sequence_episode(states: torch.Tensor, truth: dict[str, torch.Tensor] | None = None) -> Episode:
    """(B, T, D) states -> the Episode predicting s_T from s_1..s_{T-1} (module docstring);
    `truth`: the generating system's parameters, for oracle references."""
    if states.ndim != 3 or states.shape[1] < 3:
        raise ValueError(f"a sequence needs shape (B, T >= 3, D), got {tuple(states.shape)}")
    return Episode(states[:, :-2], states[:, 1:-1], states[:, -2], states[:, -1],  # pairs (s_t, s_t+1), query s_T-1
                   tokens=states[:, :-1], token_format=SEQUENCE, truth=truth)


def is_sequence(episode: Episode) -> bool:
    return episode.token_format == SEQUENCE


def states_of(episode: Episode) -> torch.Tensor:
    """(B, T, D): the whole sequence, target included."""
    if not is_sequence(episode):
        raise ValueError(f"not a sequence episode (token_format {episode.token_format!r})")
    return torch.cat([episode.tokens, episode.query_y[:, None]], dim=1)


def position_episode(episode: Episode, t: int) -> Episode:
    """Position t (1..T-1): transitions 1..t-1 as context, s_t as query, s_{t+1} as target.
    At t = 1 the context is one zero pair."""
    s = states_of(episode)  # (B, T, D)
    cx, cy = s[:, :t - 1], s[:, 1:t]  # (B, t-1, D)
    if t == 1:
        cx = cy = s.new_zeros(s.shape[0], 1, s.shape[2])  # (B, 1, D)
    return Episode(cx, cy, s[:, t - 1], s[:, t], tokens=s[:, :t], token_format=SEQUENCE)


def position_predictions(learner: Any, episode: Episode, predict: Predict) -> torch.Tensor:
    """(B, T-1, D): at [:, t-1] the prediction of s_{t+1} from s_1..s_t."""
    out = one_pass(learner, "predict_positions", episode)
    if out is not None:
        return out
    s = states_of(episode)  # (B, T, D)
    B, T, D = s.shape
    if getattr(learner, "prefix_by_padding", False):
        keep = torch.ones(T - 1, T - 1, device=s.device).tril(-1).to(s.dtype)  # (t, i): transition i+1 seen at t+1
        cx = (s[:, None, :-1] * keep[None, :, :, None]).reshape(B * (T - 1), T - 1, D)  # (B*(T-1), T-1, D)
        cy = (s[:, None, 1:] * keep[None, :, :, None]).reshape(B * (T - 1), T - 1, D)
        padded = Episode(cx, cy, s[:, :-1].reshape(-1, D), s[:, 1:].reshape(-1, D))
        return predict(padded).reshape(B, T - 1, D)
    return torch.stack([predict(position_episode(episode, t)) for t in range(1, T)], dim=1)


def position_losses(learner: Any, episode: Episode, predict: Predict) -> torch.Tensor:
    """(B, T-1): the loss (0.5 squared error) of every task at every position."""
    preds = position_predictions(learner, episode, predict)  # (B, T-1, D)
    return task_losses(preds, states_of(episode)[:, 1:]).double()


def position_curve(learner: Any, episode: Episode, predict: Predict, losses: torch.Tensor | None = None) -> dict[str, Any]:
    """Per position t = 1..T-1: the mean loss over tasks (`loss`, 0.5 squared error as
    everywhere) with its 95 % half-width (`ci95`); and `mean`, the loss averaged over
    positions, with its CI over tasks. `losses`: the (B, T-1) position losses if already known."""
    losses = position_losses(learner, episode, predict) if losses is None else losses  # (B, T-1)
    B = losses.shape[0]
    ci = 1.96 * losses.std(dim=0, unbiased=True) / B ** 0.5 if B > 1 else torch.full_like(losses[0], float("nan"))
    mean, mean_ci = mean_ci95(losses.mean(dim=1))
    return {"t": list(range(1, losses.shape[1] + 1)), "loss": losses.mean(dim=0).tolist(), "ci95": ci.tolist(),
            "mean": mean, "mean_ci95": mean_ci}


def sensitivity_positions(last: int) -> list[int]:
    """The positions t (2..last) whose input sensitivities are measured: SENSITIVITY_AT of the
    last position, rounded; t = 1 is left out (it has no transition to cut after)."""
    return sorted({min(last, max(2, round(f * last))) for f in SENSITIVITY_AT}) if last >= 2 else []


def position_sensitivities(learner: Any, episode: Episode, sensitivity: Sensitivity,
                           positions: list[int] | None = None) -> dict[int, torch.Tensor]:
    """t -> (B, D, D) d yhat_t / d s_t at each of `positions` (default `sensitivity_positions`)."""
    s = states_of(episode)  # (B, T, D)
    positions = sensitivity_positions(s.shape[1] - 1) if positions is None else positions
    return {t: sensitivity(learner, sequence_episode(s[:, :t + 1], episode.truth)) for t in positions}


def score_positions(learner: Any, episode: Episode, ref: tuple | None, predict: Predict,
                    sensitivity: Sensitivity) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """A sequence record's own part: (its `position_curve` and `position_sensitivity` fields,
    its metrics, the metrics left undefined and why). The loss at every position and its mean
    over positions; against a reference's outputs `ref` (its (B, T, D) predictions at [2], its
    sensitivities per measured position at [3]) the paired loss difference, the prediction gap
    and the sensitivity cosine at each measured position."""
    at_positions = position_predictions(learner, episode, predict)  # (B, T, D)
    target = states_of(episode)[:, 1:]  # (B, T, D)
    per_position = task_losses(at_positions, target).double()  # (B, T)
    curve = position_curve(learner, episode, predict, per_position)
    fields: dict[str, Any] = {"position_curve": {k: curve[k] for k in ("t", "loss", "ci95")}}
    metrics = {"position_loss": curve["mean"], "position_loss_ci95": curve["mean_ci95"]}
    undefined: dict[str, str] = {}
    if ref is None:
        return fields, metrics, undefined
    diff = per_position.mean(1) - task_losses(ref[2], target).double().mean(1)  # (B,) paired
    metrics["position_loss_diff"], metrics["position_loss_diff_ci95"] = mean_ci95(diff)
    gap = (at_positions - ref[2]).double().norm(dim=-1)  # (B, T) ||yhat_t - yhat_ref,t||
    metrics["position_pred_diff"], metrics["position_pred_diff_ci95"] = mean_ci95(gap.mean(1))
    fields["position_curve"]["pred_diff"] = gap.mean(0).tolist()
    fields["position_curve"]["pred_diff_ci95"] = (1.96 * gap.std(0) / gap.shape[0] ** 0.5).tolist()
    cosines = {t: cosine_against(sens_t, ref[3][t])  # (B,) per measured t
               for t, sens_t in position_sensitivities(learner, episode, sensitivity, list(ref[3])).items()}
    per_t = [defined_mean_ci95(c) or (float("nan"), float("nan")) for c in cosines.values()]
    fields["position_sensitivity"] = {"t": list(cosines), "sens_cos": [m for m, _ in per_t], "ci95": [c for _, c in per_t]}
    stat = defined_mean_ci95(torch.stack(list(cosines.values())).mean(0))
    if stat is None:
        undefined["position_sens_cos"] = "the reference's sensitivities are zero on every task"
    else:
        metrics["position_sens_cos"], metrics["position_sens_cos_ci95"] = stat
    return fields, metrics, undefined

