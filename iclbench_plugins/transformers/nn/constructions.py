"""Weight constructions that make linear self-attention do gradient descent (Proposition 1).

With tokens e = (x, y) and attention averaging over the N context tokens, one layer with
    W_K = W_Q = [[I, 0], [0, 0]],   W_V = [[-gamma I, 0], [0, -eta I]],   P = I
updates every token by y_i <- y_i - (eta/N) sum_j y_j x_j^T x_i, which is y_i - dW x_i for the
GD step dW = -eta grad L(W) from the current residuals, and x_i <- (I - gamma X^T X / N) x_i
(GD++; gamma = 0 gives plain GD). The query's y-entry starts at 0, so minus it is the prediction.
"""

from __future__ import annotations

import torch

from iclbench_plugins.transformers.nn.model import InContextTransformer


def gd_products(dx: int, dy: int, eta: float, gamma: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_KQ, W_PV), each (D, D), of one GD (or GD++) layer: W_KQ = W_K^T W_Q, W_PV = P W_V."""
    D, f64 = dx + dy, torch.float64
    W_KQ = torch.zeros(D, D, dtype=f64)
    W_KQ[:dx, :dx] = torch.eye(dx, dtype=f64)
    W_PV = torch.zeros(D, D, dtype=f64)
    W_PV[:dx, :dx] = -gamma * torch.eye(dx, dtype=f64)
    W_PV[dx:, dx:] = -eta * torch.eye(dy, dtype=f64)
    return W_KQ, W_PV


@torch.no_grad()
def set_gd_weights(model: InContextTransformer, etas: list[float], gammas: list[float] | None = None) -> None:
    """Give each of the model's (untied, one-head, linear) layers the GD / GD++ weights for its step."""
    if len(model.blocks) != len(etas):
        raise ValueError(f"the model has {len(model.blocks)} layers but {len(etas)} learning rates were given")
    for k, block in enumerate(model.blocks):
        a = block.attn
        W_KQ, W_PV = gd_products(model.dx, model.dy, etas[k], 0.0 if gammas is None else gammas[k])
        a.W_Q.copy_(W_KQ[None])
        a.W_K.copy_(W_KQ[None])  # W_K^T W_Q = W_KQ since both are the same projection
        a.W_V.copy_(W_PV[None])
        a.P.copy_(torch.eye(model.dx + model.dy, dtype=torch.float64)[None])
