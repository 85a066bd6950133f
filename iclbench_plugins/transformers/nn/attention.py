"""Causal linear self-attention, the attention of the paper's LSA layers on a sequence
(von Oswald et al. 2023b): each position sums the values of every position up to it,
weighted by the key-query dot product, with no softmax and no normalisation."""

from __future__ import annotations

import torch


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, H, T, dv): sum_{t' <= t} v_t' (k_t' . q_t)."""
    T = q.shape[2]
    scores = (q @ k.transpose(-1, -2)) * torch.ones(T, T, dtype=q.dtype, device=q.device).tril()  # (B, H, T, T)
    return scores @ v
