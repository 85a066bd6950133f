"""The mesa-layer (von Oswald et al. 2023, arXiv 2309.05858): causal in-context ridge regression.

For each task b and head h, position t fits a linear map from keys to values on the prefix,

    Phi_t = argmin_Phi 1/2 sum_{t'<=t} ||v_t' - Phi k_t'||^2 + lambda_h/2 ||Phi||_F^2
          = (sum_{t'<=t} v_t' k_t'^T) R_t,   R_t = (sum_{t'<=t} k_t' k_t'^T + lambda_h I)^{-1},

and outputs Phi_t q_t. Since Phi_t q_t = sum_{t'<=t} v_t' (k_t'^T R_t q_t), the layer is causal
linear attention applied to the preconditioned queries qtilde_t = R_t q_t. Two ways to get them:
a Sherman-Morrison recurrence over t, or one batched linear solve per position. The layer with
its projections and learned lambda is `CausalAttention(kind="mesa")` in sequence_transformer.py.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

METHODS = ("auto", "sherman-morrison", "solve")


def _lam(lam: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """lam (H,) -> (1, H, 1, 1) in the dtype/device of `like`, ready to scale (dk, dk) matrices."""
    return lam.to(dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def preconditioned_queries_sherman_morrison(
    q: torch.Tensor, k: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """qtilde_t = R_t q_t with R_t updated by Sherman-Morrison; q, k (B, H, T, dk), lam (H,).

    R_0 = I / lambda and R_t = R_{t-1} - (R_{t-1} k_t)(R_{t-1} k_t)^T / (1 + k_t^T R_{t-1} k_t).
    Loops over t only; every update is out of place so autograd can differentiate through it.
    """
    B, H, T, dk = q.shape
    eye = torch.eye(dk, dtype=q.dtype, device=q.device)
    R = (eye / _lam(lam, q)).expand(B, H, dk, dk)  # (B, H, dk, dk)
    out = []
    for t in range(T):
        kt = k[:, :, t]  # (B, H, dk)
        Rk = (R @ kt.unsqueeze(-1)).squeeze(-1)  # (B, H, dk); R symmetric, so also k^T R
        denom = 1.0 + (kt * Rk).sum(-1)  # (B, H)
        R = R - Rk.unsqueeze(-1) * Rk.unsqueeze(-2) / denom[..., None, None]  # (B, H, dk, dk)
        out.append((R @ q[:, :, t].unsqueeze(-1)).squeeze(-1))  # (B, H, dk)
    return torch.stack(out, dim=2)  # (B, H, T, dk)


class LUSolve(torch.autograd.Function):
    """x = S^{-1} b for batches of square S, as torch.linalg.solve, with the same bits forward and
    backward (an LU factorisation, then the adjoint solve with the same factors for the gradient).

    Written out because under torch.func.vmap linalg.solve's gradient factorises S^T afresh and
    differs from its eager gradient in the last bits; this one runs the same operations in both,
    so stacked seeds (`iclbench.stacked`) train bit for bit. First derivatives only: a second
    derivative raises instead of being silently wrong.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(S: torch.Tensor, b: torch.Tensor):
        LU, pivots = torch.linalg.lu_factor(S)
        return torch.linalg.lu_solve(LU, pivots, b), LU, pivots  # x (..., n, m), and the factors

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, LU, pivots = output
        ctx.save_for_backward(LU, pivots, x)
        ctx.mark_non_differentiable(LU, pivots)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x: torch.Tensor, _grad_lu, _grad_pivots):
        LU, pivots, x = ctx.saved_tensors
        grad_b = torch.linalg.lu_solve(LU, pivots, grad_x, adjoint=True)  # S^-T grad_x, (..., n, m)
        return -grad_b @ x.mT, grad_b  # dL/dS = -S^-T grad_x x^T


def preconditioned_queries_solve(q: torch.Tensor, k: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """qtilde_t = S_t^{-1} q_t with S_t = sum_{t'<=t} k k^T + lambda I, all positions in one solve."""
    dk = q.shape[-1]
    eye = torch.eye(dk, dtype=q.dtype, device=q.device)
    S = torch.cumsum(k.unsqueeze(-1) * k.unsqueeze(-2), dim=2)  # (B, H, T, dk, dk)
    S = S + (_lam(lam, q) * eye).unsqueeze(2)  # + lambda_h I, broadcast (1, H, 1, dk, dk)
    return LUSolve.apply(S, q.unsqueeze(-1))[0].squeeze(-1)  # (B, H, T, dk)


def mesa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lam: torch.Tensor, method: str = "auto"
) -> torch.Tensor:
    """Mesa-layer output Phi_t q_t, (B, H, T, dv), from q, k (B, H, T, dk), v (B, H, T, dv), lam (H,).

    "auto" picks "solve" for dk <= 16 and "sherman-morrison" above. Measured forward+backward on
    CPU, float32, one thread, best of 20 interleaved runs (ranges: three runs, busy 2-core host):
      B=256, H=4, T=50,  dk=dv=10: solve 190-250 ms, Sherman-Morrison 250-275 ms;
      B=128, H=2, T=50,  dk=dv=20: solve 175 ms,     Sherman-Morrison 145 ms;
      B=64,  H=1, T=100, dk=dv=40: solve 455-520 ms, Sherman-Morrison 235-290 ms.
    The batched solve costs O(T dk^3) work and O(T dk^2) memory per head; the recurrence O(T dk^2)
    work in T small steps, so it wins once dk is moderate. The solve is also a few times more
    accurate in float32 for small lambda.
    """
    if method not in METHODS:
        raise ValueError(f"unknown mesa_attention method {method!r}; expected one of {METHODS}")
    if method == "auto":
        method = "solve" if q.shape[-1] <= 16 else "sherman-morrison"
    if method == "sherman-morrison":
        qt = preconditioned_queries_sherman_morrison(q, k, lam)  # (B, H, T, dk)
    else:
        qt = preconditioned_queries_solve(q, k, lam)  # (B, H, T, dk)
    T = q.shape[2]
    scores = qt @ k.transpose(-1, -2)  # (B, H, T, T): [t, t'] = k_t'^T qtilde_t
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # (T, T), t' <= t
    scores = scores.masked_fill(~causal, 0.0)  # (B, H, T, T)
    return scores @ v  # (B, H, T, dv)
