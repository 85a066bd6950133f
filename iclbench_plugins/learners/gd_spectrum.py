"""GD and GD++ in the eigenbasis of the context covariance: K steps as a filter of its
eigenvalues, which makes tuning their rates cheap and exact.

With S = X^T X / N = U diag(lam) U^T and C = Y^T X / N, K steps of GD from W0 = 0 predict
C h(S) x_q; GD++'s input transform x <- (I - gamma S_k) x keeps every matrix a function of S
(S_k = S g_k(S)^2), so its prediction has the same form. Per eigenvalue, step k does

    h <- h + eta_k (1 - lam h) g^2,        g^2 <- g^2 (1 - gamma_k lam g^2)^2,

from h = 0, g^2 = 1 (GD: gamma = 0, g = 1). The residual filter r = 1 - lam h is what is left
of the teacher along that eigenvector (y = W x: the error is W r(S) x_q); r = 1 is the zero
predictor. One batched eigendecomposition of the tuning tasks (`spectrum`) turns each loss
evaluation into elementwise work on (B, d), instead of K steps of (B, N, d) tokens on a tape.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Spectrum(NamedTuple):
    """Tasks in the eigenbasis of S: eigenvalues lam (B, d), b (B, dy, d) with the prediction
    b @ h(lam), and the query targets y (B, dy)."""

    lam: torch.Tensor
    b: torch.Tensor
    y: torch.Tensor

    def predict(self, etas: torch.Tensor, gammas: torch.Tensor | None = None) -> torch.Tensor:
        """(B, dy): the K-step prediction, exactly `gd_predict`'s without clipping."""
        h = filters(self.lam, etas, gammas)[0]  # (B, d)
        return (self.b * h[:, None, :]).sum(-1)

    def loss(self, etas: torch.Tensor, gammas: torch.Tensor | None = None) -> torch.Tensor:
        """0.5 ||prediction - y||^2 averaged over tasks (a 0-dim tensor)."""
        return 0.5 * (self.predict(etas, gammas) - self.y).pow(2).sum(-1).mean()

    def zero_loss(self) -> float:
        """The zero predictor's loss on these tasks: what no tuned rate may be worse than."""
        return float(0.5 * self.y.pow(2).sum(-1).mean())


def spectrum(context_x: torch.Tensor, context_y: torch.Tensor, query_x: torch.Tensor,
             query_y: torch.Tensor) -> Spectrum:
    """The `Spectrum` of a batch of tasks: one batched eigh of their (d, d) covariances."""
    N = context_x.shape[1]
    S = context_x.transpose(1, 2) @ context_x / N  # (B, d, d)
    lam, U = torch.linalg.eigh(S)  # (B, d), (B, d, d)
    C = context_y.transpose(1, 2) @ context_x / N  # (B, dy, d)
    u = torch.einsum("bde,bd->be", U, query_x)  # (B, d) = U^T x_q
    return Spectrum(lam, (C @ U) * u[:, None, :], query_y)


def filters(lam: torch.Tensor, etas: torch.Tensor, gammas: torch.Tensor | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """h and the residual filter r = 1 - lam h after K = len(etas) steps, at eigenvalues `lam`
    (any shape); `gammas` (K,) makes them GD++'s."""
    h, g2 = torch.zeros_like(lam), torch.ones_like(lam)
    for k in range(etas.shape[0]):
        h = h + etas[k] * (1 - lam * h) * g2
        if gammas is not None:
            g2 = g2 * (1 - gammas[k] * lam * g2).pow(2)
    return h, 1 - lam * h
