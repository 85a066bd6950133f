"""Metrics: the paper's query loss with confidence intervals, and alignment between learners.

loss: 0.5 * ||yhat - y||^2 on the query, averaged over tasks (von Oswald et al. 2023).
Alignment (their Sec. 4): prediction difference and input sensitivities d yhat / d x_query.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from iclbench.episode import Episode

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (normal beyond 30)."""
    if df < 1:
        return float("nan")
    return _T975[df - 1] if df <= len(_T975) else 1.960


def task_losses(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) per-task loss 0.5 * ||pred - target||^2 from (B, dy) tensors."""
    return 0.5 * (pred - target).pow(2).sum(dim=-1)


def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of its 95 % confidence interval (normal approximation over tasks)."""
    v = values.detach().double().flatten()
    n = v.numel()
    if n < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), 1.96 * float(v.std(unbiased=True)) / math.sqrt(n)


TRIM = 0.01  # share of tasks cut from each tail for the trimmed mean


def robust_loss(losses: torch.Tensor) -> dict[str, float]:
    """The median and the 1 %-trimmed mean of per-task losses (B,): a few exploding tasks
    (a brittle learning rate, an ill-conditioned context) can own the mean."""
    v = losses.detach().double().flatten().sort().values  # (B,) ascending; NaN sorts last
    cut = int(TRIM * v.numel())
    kept = v[cut: v.numel() - cut] if v.numel() - 2 * cut > 0 else v
    return {"loss_median": float(v.quantile(0.5)), "loss_trimmed": float(kept.mean())}


def across_seeds(means: list[float], cis: list[float]) -> tuple[float, float]:
    """Mean over seeds with a Student-t 95 % interval of the seed means; one seed keeps its own CI."""
    n = len(means)
    m = sum(means) / n
    if n == 1:
        return m, cis[0]
    sd = math.sqrt(sum((x - m) ** 2 for x in means) / (n - 1))
    return m, t975(n - 1) * sd / math.sqrt(n)


def sensitivities(predict: Callable[[Episode], torch.Tensor], episode: Episode) -> torch.Tensor:
    """(B, dy, dx) Jacobian of each task's prediction w.r.t. its own query input.

    Tasks are independent, so one backward pass of the batch sum per output gives every
    task's gradient at once. A prediction that does not depend on the query gives zeros.
    """
    qx = episode.query_x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        pred = predict(episode.with_query_x(qx))  # (B, dy)
        if not pred.requires_grad:
            return torch.zeros(*pred.shape, qx.shape[-1], dtype=qx.dtype, device=qx.device)
        rows = []
        for k in range(pred.shape[-1]):
            (g,) = torch.autograd.grad(pred[:, k].sum(), qx, retain_graph=k + 1 < pred.shape[-1], allow_unused=True)
            rows.append(torch.zeros_like(qx) if g is None else g)
    return torch.stack(rows, dim=1)  # (B, dy, dx)


def sensitivity_cosine(sens: torch.Tensor, ref_sens: torch.Tensor) -> torch.Tensor:
    """(B,) cosine between each task's flattened sensitivities (B, dy, dx) and the reference's."""
    return torch.nn.functional.cosine_similarity(sens.flatten(1), ref_sens.flatten(1), dim=-1, eps=1e-12)


def alignment(pred: torch.Tensor, ref_pred: torch.Tensor, sens: torch.Tensor, ref_sens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-task alignment values against a reference learner, each (B,).

    pred_diff: ||yhat - yhat_ref||; sens_cos: cosine of flattened sensitivities;
    sens_diff: ||s - s_ref||.
    """
    s, r = sens.flatten(1), ref_sens.flatten(1)  # (B, dy*dx)
    return {
        "pred_diff": (pred - ref_pred).norm(dim=-1),
        "sens_cos": sensitivity_cosine(sens, ref_sens),
        "sens_diff": (s - r).norm(dim=-1),
    }


def defined_mean_ci95(values: torch.Tensor) -> tuple[float, float] | None:
    """`mean_ci95` over the tasks where `values` (B,) is defined (not NaN); None if nowhere."""
    kept = values[~values.isnan()]
    return mean_ci95(kept) if kept.numel() else None


def cosine_against(sens: torch.Tensor, ref_sens: torch.Tensor) -> torch.Tensor:
    """(B,) sensitivity cosines, NaN where the reference's sensitivity is zero (a cosine against
    a zero vector is undefined); a learner whose own sensitivity is zero gets 0."""
    cos = sensitivity_cosine(sens, ref_sens)  # (B,)
    return cos.masked_fill(ref_sens.flatten(1).abs().amax(-1) == 0, float("nan"))
