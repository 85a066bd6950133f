"""Few-shot regression posed as a sequence (von Oswald et al. 2023b, Sec. 6) as a task family,
`fewshot`: the tokens x_1, y_1, ..., x_n, y_n, x_{n+1} (layout `pairs`) or with a zero EOS token
after each y (layout `eos`), in the D-dimensional state space of the `lds` tasks, and the target
y_{n+1} = W x_{n+1}, W Haar-orthogonal per task, x ~ U(-1, 1)^D (`fewshot_problems` below).

The episode's context pairs are the (x_i, y_i) themselves, so every pair learner scores on it
unchanged and `least-squares` is the reference; a sequence model (`seq-tf`) reads the tokens
(token_format "interleaved") and predicts the state after the last one. The `fewshot` suite
trains on `lds` and scores from 1 to 12 shots in both layouts, so a model trained only on next
states is scored on regression by number of shots, in the leaderboard's loss-against-shots plot.
The learned prompt is fitted to a trained model, so it lives in the `fewshot` analysis.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import INTERLEAVED, TaskShape
from iclbench_plugins.tasks.lds import haar_orthogonal


def fewshot_problems(n: int, D: int, shots: int, *, noise_std: float, generator: torch.Generator,
                     device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and labels y, each (n, shots, D): W Haar-orthogonal per task, x ~ U(-1, 1)^D,
    y = W x + noise_std * N(0, I)."""
    W = haar_orthogonal(n, D, generator, device).to(dtype)  # (n, D, D)
    x = (2 * torch.rand(n, shots, D, generator=generator, device=device) - 1).to(dtype)  # (n, S, D)
    noise = torch.randn(n, shots, D, generator=generator, device=device).to(dtype)  # (n, S, D)
    return x, torch.einsum("nij,nsj->nsi", W, x) + noise_std * noise


def build_sequence(x: torch.Tensor, y: torch.Tensor, eos: torch.Tensor | None = None,
                   prompt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """States (B, L, D) laying out x, y (B, S, D) as pairs (eos None) or triplets (x_i, y_i, eos),
    after the prefix tokens `prompt` (K, D) if given; and the positions (S,) of x_1..x_S in it."""
    B, S, D = x.shape
    parts = [x, y] if eos is None else [x, y, eos.to(x).expand(B, S, D)]
    seq = torch.stack(parts, dim=2).reshape(B, S * len(parts), D)  # (B, S*k, D) x_1, y_1, [eos,] x_2, ...
    offset = 0
    if prompt is not None:
        seq = torch.cat([prompt.to(x).expand(B, *prompt.shape), seq], dim=1)  # (B, K + S*k, D)
        offset = prompt.shape[0]
    return seq, offset + len(parts) * torch.arange(S, device=x.device)


class FewShotRegression(iclbench.Task):
    """Few-shot linear regression posed as a sequence x_1, y_1, ..., x_n, y_n, x_n+1 (mesa paper, Sec. 6)."""

    name = "fewshot"

    class Config(iclbench.TaskConfig):
        D: int = Field(10, ge=1, description="dimension of x and y (the lds state dimension)")
        shots: int = Field(12, ge=1, description="context pairs n before the query x_{n+1}")
        layout: Literal["pairs", "eos"] = Field("pairs", description="pairs: x, y, x, y, ...; eos: x, y, 0, x, y, 0, ...")
        noise_std: float = Field(0.0, ge=0, description="label noise of y = W x")

    def episode_shape(self) -> TaskShape:
        """`shots` pairs of (D, D) and the tokens up to the query x (2 or, with eos, 3 per shot,
        and one); sampling also holds W and its QR draw (D x D each), the query's y, the noise
        and the whole laid-out sequence."""
        c = self.config
        per_shot = 3 if c.layout == "eos" else 2
        tokens = per_shot * c.shots + 1
        extra = 3 * c.D * c.D + 2 * (c.shots + 1) * c.D + per_shot * (c.shots + 1) * c.D
        return TaskShape(c.shots, c.D, c.D, tokens, c.D, INTERLEAVED, extra=extra)

    def sample(self, n: int, *, generator: torch.Generator, device) -> iclbench.Episode:
        c = self.config
        x, y = fewshot_problems(n, c.D, c.shots + 1, noise_std=c.noise_std, generator=generator, device=device)
        eos = torch.zeros(c.D, device=device) if c.layout == "eos" else None
        seq, at_x = build_sequence(x, y, eos)  # (n, L, D), (shots + 1,) positions of x_1..x_{n+1}
        tokens = seq[:, : int(at_x[-1]) + 1]  # (n, L', D) ending with the query x_{n+1}
        return iclbench.Episode(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1], tokens=tokens, token_format=INTERLEAVED)


@iclbench.hookimpl
def register_tasks(register) -> None:
    register(FewShotRegression)
