"""Error against context length (Garg et al. 2022; Akyürek et al. 2023): the query error of a
learner given only the first k context points, k = 1..N, divided by the zero predictor's.

A learner whose prediction is a running sum over the context (averaging, one GD step) can give
every prefix in one pass through `predict_prefixes(episode) -> (B, N, dy)` (or None when its
config has no such form). A learner that sets `prefix_by_padding = True` ignores context pairs
(0, 0) (minimum-norm least squares, a discrete posterior): all its prefixes are then batched
into one call, the pairs beyond k set to zero. Any other learner is asked once per prefix
length, each time on all tasks at once.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from iclbench.episode import Episode
from iclbench.metrics import mean_ci95, task_losses

Predict = Callable[[Episode], torch.Tensor]


def one_pass(learner: Any, method: str, episode: Episode) -> torch.Tensor | None:
    """The learner's own all-at-once form (`predict_prefixes`, `predict_positions`) on `episode`,
    without a tape; None when it has none or declines (returns None)."""
    fn = getattr(learner, method, None)
    if fn is None:
        return None
    with torch.no_grad():
        return fn(episode)


def prefix_predictions(learner: Any, episode: Episode, predict: Predict) -> torch.Tensor:
    """(B, N, dy): the query prediction from the first k context points, at [:, k - 1]."""
    if episode.tokens is not None:
        raise ValueError("error against context length needs plain (x, y) pairs, not a token sequence")
    if getattr(learner, "prefix_by_padding", False):
        return padded_predictions(episode, predict)
    out = one_pass(learner, "predict_prefixes", episode)
    if out is not None:
        return out
    return torch.stack([predict(episode.prefix(k)) for k in range(1, episode.n_context + 1)], dim=1)


PADDED_ELEMENTS = 2**25  # numbers of one batch of padded prefixes (their context)


def padded_predictions(episode: Episode, predict: Predict) -> torch.Tensor:
    """(B, N, dy): every prefix as its own task with the pairs beyond k zeroed, a batch of
    tasks at a time (B * N tasks of N pairs in all)."""
    B, N = episode.batch_size, episode.n_context
    keep = torch.ones(N, N, device=episode.device).tril()  # (k, i): pair i is in prefix k + 1
    chunk = max(1, PADDED_ELEMENTS // (N * N * (episode.dx + episode.dy)))
    out = []
    for start in range(0, B, chunk):
        ep = episode.slice(start, start + chunk)
        b = ep.batch_size
        mask = keep.to(ep.context_x.dtype)[None, :, :, None]  # (1, N, N, 1)
        padded = Episode((ep.context_x[:, None] * mask).reshape(b * N, N, ep.dx),  # (b*N, N, dx)
                         (ep.context_y[:, None] * mask).reshape(b * N, N, ep.dy),
                         ep.query_x.repeat_interleave(N, 0), ep.query_y.repeat_interleave(N, 0))
        out.append(predict(padded).reshape(b, N, ep.dy))
    return torch.cat(out)


Scores = Callable[[torch.Tensor, Episode], dict[str, torch.Tensor]]  # (B, dy) predictions -> name -> (B,)


def prefix_curve(learner: Any, episode: Episode, predict: Predict, scores: Scores | None = None
                 ) -> dict[str, list[float]]:
    """Per k: the mean query loss over tasks divided by the zero predictor's mean loss on the
    same tasks (`error`), and the 95 % half-width of that ratio of means over tasks (`ci95`),
    paired: by the delta method on the same tasks, se(r) = sd(L_i - r Z_i) / (sqrt(B) mean Z),
    so the zero predictor's own curve is 1 with no band and a learner's band carries only what
    differs from the zero predictor's on its tasks. With the task's `scores` (a classification
    task's sign accuracy, Garg's metric for it), each score's mean and 95 % half-width per k too."""
    preds = prefix_predictions(learner, episode, predict)  # (B, N, dy)
    losses = task_losses(preds, episode.query_y[:, None]).double()  # (B, N)
    zero_losses = task_losses(torch.zeros_like(episode.query_y), episode.query_y).double()  # (B,)
    zero = float(zero_losses.mean())
    ratio = losses.mean(0) / zero  # (N,)
    B = losses.shape[0]
    residual = losses - ratio[None, :] * zero_losses[:, None]  # (B, N): L_i - r Z_i, mean 0
    ci = 1.96 * residual.std(dim=0, unbiased=True) / (B ** 0.5 * zero) if B > 1 \
        else torch.full((losses.shape[1],), float("nan"))
    out = {"k": list(range(1, losses.shape[1] + 1)), "error": ratio.tolist(), "ci95": ci.tolist()}
    per_k = [scores(preds[:, k], episode) for k in range(preds.shape[1])] if scores is not None else []
    for name in (per_k[0] if per_k else {}):
        stats = [mean_ci95(values[name]) for values in per_k]  # (mean, half-width) per k
        out[name], out[f"{name}_ci95"] = [m for m, _ in stats], [c for _, c in stats]
    return out


def running_means(episode: Episode) -> torch.Tensor:
    """(B, N, dy): at [:, k - 1], (1/k) sum_{i <= k} y_i (x_i . x_query), the prediction of
    averaging (and, times eta, of one GD step) from the first k pairs, all k in one pass."""
    terms = episode.context_y * torch.einsum("bnd,bd->bn", episode.context_x, episode.query_x)[..., None]  # (B, N, dy)
    k = torch.arange(1, episode.n_context + 1, device=episode.device, dtype=terms.dtype)  # (N,)
    return terms.cumsum(dim=1) / k[:, None]
