"""LayerNorm and Linear with the same bits eagerly and under vmap, so stacked seeds train bit
for bit (`iclbench.stacked`).

Under torch.func.vmap, with stacked (per-model) parameters, nn.LayerNorm runs as separate
operations instead of its fused kernel, and nn.Linear's fused bias product (addmm) as a batched
product then a sum: a stacked model's gradients then differ from its own in the last bits.
These compute the same functions as operations that vmap batches one to one: LayerNorm
normalises with the fused kernel (no per-model parameter in it) and applies the affine map as a
product and a sum; Linear adds its bias after the product, and forms a single output as a sum of
elementwise products (one-column matrix products are other kernels under vmap). Parameters and state-dict keys are
nn.LayerNorm's and nn.Linear's, so checkpoints load either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (learned weight and bias over the last dimension), stackable bit for bit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, None, None, self.eps) * self.weight + self.bias


class Linear(nn.Linear):
    """nn.Linear, its bias added after the product, stackable bit for bit. One output (a read-out
    of a scalar) is a sum of elementwise products: a matrix product with one column runs eagerly
    and under vmap as different kernels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_features == 1:
            out = (x * self.weight[0]).sum(-1, keepdim=True)  # (..., 1)
        else:
            out = F.linear(x, self.weight)
        return out if self.bias is None else out + self.bias
