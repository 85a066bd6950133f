"""Few-shot regression with a sequence Transformer trained on linear dynamics (von Oswald et al.
2023b, "Uncovering mesa-optimization algorithms in Transformers", in-context learning section):
does a model trained only to predict the next state of a sequence also learn y = W x from a few
(x, y) examples laid out as a sequence, and does a learned prompt help it?

Tasks follow the reference code's ICL generator (src/data/icl/icl_data.py, icl_single.py):
W (D x D) Haar-orthogonal per task, x ~ U(-1, 1)^D, y = W x (+ noise, 0.01 in the reference; 0
by default here, see `noise_std`). Three layouts:

- `pairs`:  x_1, y_1, x_2, y_2, ...
- `eos`:    x_1, y_1, EOS, x_2, y_2, EOS, ...  (EOS a constant vector, or learned as the
  reference does: N(0, 1) init, Adam, loss at the x positions)
- `prompt`: P_1..P_K, then the eos layout; the K prefix tokens (N(0, 1) init) are trained by
  Adam on freshly drawn few-shot sequences with the model (and EOS) frozen, loss at the x
  positions only (the reference's PrefixFineTuner).

The loss of shot i is 1/2 ||prediction - y_i||^2 with the prediction read at x_i's position (the
model's next-state prediction there), against the minimum-norm least-squares fit on the i - 1
pairs before it and the zero predictor. Every format sees the same tasks, so differences
between formats and against least squares are paired over tasks.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import (
    Analysis, AnalysisConfig, AnalysisContext, decorate, generator, mean_ci95, save, styles, subplots)
from iclbench_plugins.tasks.fewshot import build_sequence, fewshot_problems
from iclbench_plugins.transformers.sequence import SequenceTransformer, trained_seq_tf

FORMATS = ("pairs", "eos", "prompt")
Draw = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def fewshot_predictions(model: SequenceTransformer, x: torch.Tensor, y: torch.Tensor,
                        eos: torch.Tensor | None = None, prompt: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S, D): the model's prediction of y_i, its next-state output at x_i's position."""
    seq, pos = build_sequence(x, y, eos, prompt)
    return model(seq)[:, pos]


def fewshot_losses(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, S) per-task, per-shot loss 1/2 ||pred - y||^2."""
    return 0.5 * (pred - y).pow(2).sum(-1)


def least_squares_predictions(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, S, D) in float64: at shot i, x_i times the minimum-norm least-squares fit on pairs
    1..i-1 (no pairs: 0). All shots at once: pairs j >= i are zeroed, which leaves the
    minimum-norm solution on the rest unchanged."""
    xd, yd = x.double(), y.double()
    S = x.shape[1]
    seen = torch.ones(S, S, dtype=torch.float64, device=x.device).tril(-1)[None, :, :, None]  # (1, S, S, 1) j < i
    X, Y = seen * xd[:, None], seen * yd[:, None]  # (B, S, S, D): shot i's design and targets
    A = torch.linalg.pinv(X) @ Y  # (B, S, D, D): W^T fitted before shot i
    return (xd[:, :, None, :] @ A)[:, :, 0]  # (B, S, D)


def train_tokens(model: SequenceTransformer, draw: Draw, init: torch.Tensor, *, learn: Literal["eos", "prompt"],
                 eos: torch.Tensor | None = None, steps: int, lr: float, batch: int) -> tuple[torch.Tensor, dict]:
    """Adam on the EOS token or the prefix prompt (init (D,) or (K, D)), the model frozen, on the
    eos layout's loss at the x positions, fresh sequences from `draw` every step. Returns the
    tokens and the loss on one fixed batch (drawn first) before and after, and the step losses."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    tokens = init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([tokens], lr=lr)

    def loss_on(xy: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        e, p = (tokens, None) if learn == "eos" else (eos, tokens)
        return fewshot_losses(fewshot_predictions(model, *xy, e, p), xy[1]).mean()

    check = draw(batch)
    trace = []
    try:
        with torch.enable_grad():
            with torch.no_grad():
                before = float(loss_on(check))
            for _ in range(steps):
                loss = loss_on(draw(batch))
                opt.zero_grad()
                loss.backward()
                opt.step()
                trace.append(float(loss.detach()))
            with torch.no_grad():
                after = float(loss_on(check))
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    every = max(1, steps // 50)
    return tokens.detach(), {"loss_before": before, "loss_after": after, "trace_every": every, "trace": trace[::every]}


def summary(losses: torch.Tensor) -> dict:
    """Per-shot mean and 95 % CI of (B, S) losses over tasks, and of their mean over shots."""
    per_shot = [mean_ci95(losses[:, i]) for i in range(losses.shape[1])]
    mean, ci = mean_ci95(losses.mean(1))
    return {"loss": [m for m, _ in per_shot], "ci95": [c for _, c in per_shot], "mean": mean, "mean_ci95": ci}


class FewShot(Analysis):
    """Few-shot regression loss against shots for pairs, EOS triplets and a learned prompt."""

    name = "fewshot"

    class Config(AnalysisConfig):
        learner: str = Field("seq-tf[layers=2]", description="a seq-tf trained on the suite's sequences")
        shots: int = Field(12, ge=1, description="(x, y) pairs per sequence: 12 triplets + 10 prompt tokens "
                           "= 46 tokens, within the T = 50 the model is trained on")
        noise_std: float = Field(0.0, ge=0, description="label noise; 0: y = W x. The reference's ICL data has "
                                 "0.01, against which the minimum-norm fit interpolates noise at shot D + 1 "
                                 "(a loss of ~1e4 there at D = 10): compare with least squares at 0")
        eos: Literal["constant", "learned"] = Field("constant", description="constant: every coordinate eos_value; "
                                                    "learned: Adam from N(0, I) as the reference")
        eos_value: float = Field(0.0, description="the constant EOS's coordinates (0: the y -> EOS -> x steps "
                                 "add nothing to a linear-attention sum)")
        prompt_tokens: int = Field(10, ge=1, description="learned prefix tokens (the reference: 20 before 224 tokens)")
        prompt_steps: int = Field(300, ge=0, description="Adam steps for the prompt (and a learned EOS); "
                                  "the reference: 5000")
        prompt_lr: float = Field(3e-2, gt=0, description="their learning rate (the reference: 1e-3 for 5000 steps)")
        prompt_batch: int = Field(128, ge=1, description="fresh sequences per step (the reference: 128)")

    def run(self, ctx: AnalysisContext) -> dict:
        c = self.config
        trained = trained_seq_tf(ctx, c.learner, self.name)
        model = trained.model.to(device=ctx.device, dtype=ctx.dtype)
        D, dev, dt = model.D, ctx.device, ctx.dtype

        def stream(*names: str) -> Draw:
            gen = generator(dev, ctx.seed, self.name, *names)
            return lambda n: fewshot_problems(n, D, c.shots, noise_std=c.noise_std, generator=gen, device=dev, dtype=dt)

        out: dict = {"learner": trained.label, "D": D, "shots": c.shots, "eos_kind": c.eos}
        eos = torch.full((D,), c.eos_value, device=dev, dtype=dt)
        if c.eos == "learned":
            init = torch.randn(D, generator=generator(dev, ctx.seed, self.name, "eos-init"), device=dev).to(dt)
            eos, out["eos_training"] = train_tokens(model, stream("eos-train"), init, learn="eos", steps=c.prompt_steps,
                                                    lr=c.prompt_lr, batch=c.prompt_batch)
        init = torch.randn(c.prompt_tokens, D, generator=generator(dev, ctx.seed, self.name, "prompt-init"), device=dev)
        prompt, out["prompt_training"] = train_tokens(model, stream("prompt-train"), init.to(dt), learn="prompt", eos=eos,
                                                      steps=c.prompt_steps, lr=c.prompt_lr, batch=c.prompt_batch)
        out["eos"] = eos.double().cpu().tolist()

        x, y = stream("eval")(ctx.n_tasks)  # (B, S, D) each, the same tasks for every format
        tokens = {"pairs": (None, None), "eos": (eos, None), "prompt": (eos, prompt)}
        with torch.no_grad():
            losses = {f: fewshot_losses(fewshot_predictions(model, x, y, *tokens[f]), y).double() for f in FORMATS}
        lsq = fewshot_losses(least_squares_predictions(x, y), y.double())  # (B, S)
        zero = fewshot_losses(torch.zeros_like(y), y).double()  # (B, S)

        out["formats"] = {}
        for f in FORMATS:
            gap = losses[f] - lsq  # (B, S) paired over tasks
            out["formats"][f] = {**summary(losses[f]), "gap": summary(gap),
                                 "length": build_sequence(x[:1], y[:1], *tokens[f])[0].shape[1]}
        out["least_squares"], out["zero"] = summary(lsq), summary(zero)
        out["differences"] = {f"{a}-{b}": dict(zip(("mean", "ci95"), mean_ci95((losses[a] - losses[b]).mean(1))))
                              for a, b in (("eos", "pairs"), ("prompt", "pairs"), ("prompt", "eos"))}
        T = getattr(getattr(ctx.suite.train, "config", None), "T", None)
        out["trained_length"] = T
        out["within_trained_length"] = T is None or max(v["length"] for v in out["formats"].values()) <= T
        out["figure"] = str(self.plot(ctx, out, trained.label))
        return out

    def plot(self, ctx: AnalysisContext, out: dict, label: str):
        """Loss against shots, log scale, 95 % bands, for the formats and both references."""
        curves = {f"TF {f}": out["formats"][f] for f in FORMATS}
        curves |= {"least squares": out["least_squares"], "zero": out["zero"]}
        shots = list(range(1, out["shots"] + 1))
        look = styles(list(curves))
        fig, ax = subplots(figsize=(5.6, 3.8))
        floor = 1e-4 * max(out["zero"]["loss"])  # least squares reaches ~0 beyond D shots
        for name, s in curves.items():
            raw = torch.tensor(s["loss"])
            m, ci = raw.clamp_min(floor), torch.tensor(s["ci95"]).nan_to_num(0.0)
            shown = f"{name} (drawn >= {floor:.1g})" if bool((raw < floor).any()) else name
            ax.plot(shots, m, label=shown, **look[name])
            ax.fill_between(shots, (m - ci).clamp_min(floor), m + ci, color=look[name]["color"], alpha=0.15)
        decorate(ax, "shot i (pairs seen: i - 1)", "loss of y_i", f"few-shot regression, {label}, seed {ctx.seed}",
                 log=True)
        path = ctx.figure_path(f"{self.name}-{label}")
        save(fig, path)
        return path


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(FewShot)
