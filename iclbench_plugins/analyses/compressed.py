"""`compressed`: reverse-engineer a trained sequence Transformer (von Oswald et al. 2023b) by
fitting a "compressed" algorithm with a handful of parameters to its predictions at every
position, and asking how much of the model it explains.

With C_t = sum_{t'<=t} s_{t'-1} s_{t'-1}^T and M_t = sum_{t'<=t} s_t' s_{t'-1}^T (s_0 = 0), as in
`online_references`, the families are:

- `polynomial`: preconditioned online GD with a polynomial preconditioner of degree J,

      prediction_t = M_t P(C_t) s_t,   P(C) = sum_{j=0}^{J} a_j C^j = eta (I + sum_{j>=1} c_j C^j).

  One GD step is J = 0 (a_0 = eta); K GD steps from 0 are degree K-1 (eta sum_{j<K} (I - eta C)^j);
  a truncated Neumann series for (C + lambda I)^{-1} with a fixed normaliser (the reference's
  `invert_matrix_neumann`) is a polynomial too, as is GD++ of few steps for J large enough. The
  prediction is linear in a, so the fit is an exact least-squares solve.
- `blocks`: the reference's compression of a model on constructed tokens e_t = (0, s_t, s_{t-1})
  (3 blocks of D): in every layer l and head h, W_K^T W_Q and P W_V are replaced by 3 x 3 grids
  of scalar multiples of I_D, kq_lh (x) I_D and pv_lh (x) I_D, giving the linear-attention recursion

      e_t <- e_t + sum_h (pv_lh (x) I_D) sum_{t'<=t} e_t' (e_t'^T (kq_lh (x) I_D) e_t),

  read out from the first block: 18 scalars per head and layer. The reference takes them as the
  mean diagonals of the blocks of the trained weight products (`TFSubdiagonals` and
  `WeightGenerator` in src/util/interpolation/interpol_helpers.py of
  mtavit/transformers_mesa_optimization_paper); that extraction is reported as `extracted`, and
  then refined here by L-BFGS on the prediction difference.

Both are fitted on training sequences (never evaluation ones) in float64 and scored on the
suite's evaluation sequences: mean position loss of the model, the compressed algorithm and a
reference (online ridge), and agreement with the model (relative squared difference, cosine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

import iclbench
from iclbench.plugin_api import (
    Analysis, AnalysisConfig, AnalysisContext, decorate, generator, lbfgs, position_losses, save,
    states_of, styles, subplots, task_losses)
from iclbench_plugins.learners.online_references import spectrum
from iclbench_plugins.transformers.sequence import SequenceTransformer, trained_seq_tf

Family = Literal["polynomial", "blocks"]
Predictor = Callable[[iclbench.Episode], torch.Tensor]


def agreement(pred: torch.Tensor, model: torch.Tensor) -> dict[str, float]:
    """How well `pred` (B, T, D) matches the model's predictions (B, T, D): the squared difference
    relative to the model's squared norm, both averaged over tasks and positions, and the cosine
    averaged over the (task, position) pairs where neither prediction is zero."""
    pred, model = pred.detach(), model.detach()
    rel = (pred - model).pow(2).sum(-1).mean() / model.pow(2).sum(-1).mean()
    cos = F.cosine_similarity(pred, model, dim=-1, eps=1e-30)  # (B, T)
    nonzero = (pred.norm(dim=-1) > 1e-12) & (model.norm(dim=-1) > 1e-12)  # (B, T)
    return {"rel_mse": float(rel), "cosine": float(cos[nonzero].mean()) if nonzero.any() else float("nan")}


def fit_polynomial(episode: iclbench.Episode, model_pred: torch.Tensor, degree: int) -> tuple[dict, Predictor]:
    """Least-squares a_0..a_J of M_t sum_j a_j C_t^j s_t against `model_pred` (B, T, D) on the
    sequences of `episode`, pooled over tasks, positions and coordinates. The basis is built on
    C / nu (nu: the largest eigenvalue seen) with unit-norm columns, for conditioning; the
    returned coefficients are in units of C. Returns the parameters and a predictor."""
    spec = spectrum(episode)
    nu = float(spec.lam.max())
    powers = torch.arange(degree + 1, dtype=torch.float64, device=spec.lam.device)  # (J+1,)
    basis = torch.stack([spec.apply((spec.lam / nu) ** j) for j in range(degree + 1)], dim=-1)  # (B, T, D, J+1)
    X, y = basis.reshape(-1, degree + 1), model_pred.detach().double().reshape(-1, 1)  # (B*T*D, J+1), (B*T*D, 1)
    norms = X.norm(dim=0).clamp_min(1e-300)  # (J+1,)
    b = torch.linalg.lstsq((X / norms).cpu(), y.cpu(), driver="gelsd").solution[:, 0].to(X.device) / norms  # (J+1,)
    a = b / nu ** powers  # (J+1,) coefficients of C^j

    def predict(ep: iclbench.Episode) -> torch.Tensor:
        s = spectrum(ep)
        return s.apply(((s.lam / nu)[..., None] ** powers * b).sum(-1))  # (B, T, D)

    eta = float(a[0])
    params = {"degree": degree, "a": a.tolist(), "eta": eta,
              "c": [float(x) for x in a / a[0]] if eta != 0 else None, "nu": nu}
    return params, predict


def constructed_tokens(s: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, D) block view of the constructed tokens (0, s_t, s_{t-1}) of states s (B, T, D)."""
    prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)  # (B, T, D) s_{t-1}, s_0 = 0
    return torch.stack([torch.zeros_like(s), s, prev], dim=2)


def blocks_forward(kq: torch.Tensor, pv: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The `blocks` algorithm (module docstring) with kq, pv (L, H, 3, 3) on states s (B, T, D):
    the prediction of every next state, (B, T, D). Block form, no 3D x 3D matrix is built."""
    e = constructed_tokens(s)  # (B, T, 3, D)
    T = s.shape[1]
    causal = torch.ones(T, T, dtype=s.dtype, device=s.device).tril()  # (T, T), t' <= t
    for kq_l, pv_l in zip(kq, pv):  # (H, 3, 3) each
        q = torch.einsum("hij,btjd->bhtid", kq_l, e)  # (B, H, T, 3, D) (kq (x) I) e_t
        scores = torch.einsum("bhtid,bsid->bhts", q, e) * causal  # (B, H, T, T) e_s^T (kq (x) I) e_t, s <= t
        v = torch.einsum("hij,bsjd->bhsid", pv_l, e)  # (B, H, T, 3, D) (pv (x) I) e_s
        e = e + torch.einsum("bhts,bhsid->btid", scores, v)  # heads summed, (B, T, 3, D)
    return e[:, :, 0]


def extract_blocks(model: SequenceTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's compression: kq, pv (L, H, 3, 3), the mean diagonals of the D x D blocks of
    W_K^T W_Q and P W_V per head (rows: the key's / output's block, columns: the query's / input's)."""
    if model.tokens != "constructed":
        raise ValueError("the blocks family needs constructed tokens (0, s_t, s_t-1)")
    D = model.D
    kqs, pvs = [], []
    for layer in model.attn:
        H, dk = layer.heads, layer.key_dim
        Wq, Wk, Wv = (w.weight.detach().double().view(H, dk, 3 * D) for w in (layer.W_Q, layer.W_K, layer.W_V))
        P = layer.P.weight.detach().double().view(3 * D, H, dk).transpose(0, 1)  # (H, 3D, dk)
        KQ, PV = Wk.transpose(1, 2) @ Wq, P @ Wv  # (H, 3D, 3D) each
        kqs.append(torch.diagonal(KQ.view(H, 3, D, 3, D), dim1=2, dim2=4).mean(-1))  # (H, 3, 3)
        pvs.append(torch.diagonal(PV.view(H, 3, D, 3, D), dim1=2, dim2=4).mean(-1))
    return torch.stack(kqs), torch.stack(pvs)  # (L, H, 3, 3) each


def fit_blocks(states: torch.Tensor, model_pred: torch.Tensor, kq: torch.Tensor, pv: torch.Tensor,
               max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """kq, pv (L, H, 3, 3) refined from the given start by full-batch L-BFGS in float64 on the
    squared prediction difference to `model_pred` (B, T, D), relative to the model's squared
    norm, over all sequences `states` (B, T, D) and positions."""
    s, target = states.detach().double(), model_pred.detach().double()
    kq, pv = (x.detach().double().clone().requires_grad_(True) for x in (kq, pv))
    norm = target.pow(2).sum(-1).mean()
    lbfgs([kq, pv], lambda: (blocks_forward(kq, pv, s) - target).pow(2).sum(-1).mean() / norm, max_iter=max_iter)
    return kq.detach(), pv.detach()


class Compressed(Analysis):
    """Fit compressed algorithms to a trained seq-tf and score them against it (module docstring)."""

    name = "compressed"

    class Config(AnalysisConfig):
        learner: str = Field("seq-tf[layers=2]", description="a trained seq-tf")
        families: list[Family] = Field(default_factory=lambda: ["polynomial", "blocks"],
                                       description="compressed families to fit; blocks needs constructed tokens")
        degree: int = Field(3, ge=0, description="degree J of the polynomial preconditioner")
        fit_tasks: int = Field(512, ge=1, description="training sequences the parameters are fitted on")
        max_iter: int = Field(300, ge=1, description="L-BFGS iterations for the blocks family")
        reference: str = Field("online-ridge", description="a per-position reference learner, for scale")

    def run(self, ctx: AnalysisContext) -> dict:
        c = self.config
        trained = trained_seq_tf(ctx, c.learner, self.name)
        model = trained.model.to(device=ctx.device, dtype=torch.float64)
        fit = ctx.suite.train.sample(c.fit_tasks, generator=generator(ctx.device, ctx.seed, "compressed-fit"),
                                     device=ctx.device).to(dtype=torch.float64)
        ev = ctx.episode().to(dtype=torch.float64)  # everything below in float64
        s_fit, s_ev = states_of(fit), states_of(ev)  # (B, T+1, D)
        with torch.no_grad():
            m_fit, m_ev = model(s_fit[:, :-1]), model(s_ev[:, :-1])  # (B, T, D)
        target = s_ev[:, 1:]  # (B, T, D)
        reference = ctx.learner(c.reference)
        curves = {"model": task_losses(m_ev, target), "reference": position_losses(reference, ev, reference.predict)}
        out: dict = {"learner": trained.label, "reference": reference.label, "families": {}}
        for family in c.families:
            if family == "polynomial":
                params, predict = fit_polynomial(fit, m_fit, c.degree)
                pred, fitted = predict(ev), predict(fit)
                result = {"parameters": params}
            else:
                if model.tokens != "constructed":
                    out["families"][family] = {"skipped": "needs constructed tokens"}
                    continue
                kq0, pv0 = extract_blocks(model)
                with torch.no_grad():
                    extracted = blocks_forward(kq0, pv0, s_ev[:, :-1])
                    extracted_fit = blocks_forward(kq0, pv0, s_fit[:, :-1])
                kq, pv = fit_blocks(s_fit[:, :-1], m_fit, kq0, pv0, c.max_iter)
                with torch.no_grad():
                    pred, fitted = blocks_forward(kq, pv, s_ev[:, :-1]), blocks_forward(kq, pv, s_fit[:, :-1])
                result = {"parameters": {"kq": kq.tolist(), "pv": pv.tolist()},
                          "extracted": {"parameters": {"kq": kq0.tolist(), "pv": pv0.tolist()},
                                        "loss": float(task_losses(extracted, target).mean()),
                                        **agreement(extracted, m_ev), "fit": agreement(extracted_fit, m_fit)}}
            curves[family] = task_losses(pred, target)  # (B, T)
            out["families"][family] = {**result, "loss": float(curves[family].mean()), **agreement(pred, m_ev),
                                       "fit": agreement(fitted, m_fit)}
        out["loss"] = {name: float(v.mean()) for name, v in curves.items() if name in ("model", "reference")}
        out["curves"] = {"t": list(range(1, target.shape[1] + 1)),
                         **{name: v.mean(0).tolist() for name, v in curves.items()}}
        out["figure"] = str(self.figure(ctx, trained.label, out["curves"]))
        return out

    def figure(self, ctx: AnalysisContext, label: str, curves: dict) -> Path:
        """Mean loss per position of the model, the reference and each fitted family."""
        path = ctx.figure_path(f"{self.name}-{label}")
        names = [n for n in curves if n != "t"]
        style = styles(names)
        fig, ax = subplots(figsize=(5.6, 3.8))
        shown = {"model": f"model ({label})", "reference": self.config.reference,
                 "polynomial": f"compressed: polynomial, degree {self.config.degree}",
                 "blocks": "compressed: scalar blocks"}
        for name in names:
            ax.plot(curves["t"], curves[name], label=shown.get(name, name), **style[name])
        decorate(ax, "position t", "loss (mean over tasks)", f"{label}, seed {ctx.seed}", log=True)
        save(fig, path)
        return path


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(Compressed)
