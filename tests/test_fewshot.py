"""Few-shot regression: the token layout, least squares and the zero predictor, a hand-set online-GD
model against its closed form, prompt training, and the analysis end to end on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from iclbench.analysis import AnalysisContext
from iclbench.suite import Suite
from iclbench_plugins.analyses.fewshot_prompt import (FewShot, build_sequence, fewshot_losses, fewshot_predictions, fewshot_problems,
                                      least_squares_predictions, train_tokens)
from iclbench_plugins.tasks.lds import LinearDynamics
from iclbench_plugins.transformers.sequence import SequenceTransformerLearner, set_online_weights


def problems(n=64, D=3, shots=7, noise_std=0.0, seed=0, dtype=torch.float64):
    return fewshot_problems(n, D, shots, noise_std=noise_std, generator=torch.Generator().manual_seed(seed),
                            device="cpu", dtype=dtype)


def gd_model(D, eta):
    """A one-layer linear seq-tf on constructed tokens set to one online GD step with rate eta."""
    model = SequenceTransformerLearner(layers=1).build_model(D).double()
    set_online_weights(model, eta=eta)
    return model


def test_tasks_are_orthogonal_maps_of_uniform_inputs():
    x, y = problems(n=256, D=4, shots=6)
    assert x.abs().max() <= 1 and abs(float(x.mean())) < 0.05 and abs(float(x.var()) - 1 / 3) < 0.02
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=0, atol=1e-6)  # W orthogonal (float32 draw), no noise
    W = torch.linalg.lstsq(x, y).solution.transpose(1, 2)  # (n, D, D) recovered per task
    assert torch.allclose(W @ W.transpose(1, 2), torch.eye(4, dtype=x.dtype).expand_as(W), rtol=0, atol=1e-6)
    assert torch.allclose(torch.einsum("nij,nsj->nsi", W, x), y, rtol=0, atol=1e-12)  # exactly linear
    _, noisy = problems(n=256, D=4, shots=6, noise_std=0.1)
    assert abs(float((noisy - y).std()) - 0.1) < 0.005  # the same tasks, plus label noise


def test_sequence_layout():
    x, y = problems(n=5, D=3, shots=4)
    eos, prompt = torch.tensor([7.0, 8.0, 9.0]), torch.arange(6.0).reshape(2, 3)
    seq, pos = build_sequence(x, y)
    assert seq.shape == (5, 8, 3) and pos.tolist() == [0, 2, 4, 6]
    assert torch.equal(seq[:, 4], x[:, 2]) and torch.equal(seq[:, 5], y[:, 2])
    seq, pos = build_sequence(x, y, eos)
    assert seq.shape == (5, 12, 3) and pos.tolist() == [0, 3, 6, 9]
    assert torch.equal(seq[:, 6], x[:, 2]) and torch.equal(seq[:, 7], y[:, 2])
    assert torch.equal(seq[:, 2::3], eos.double().expand(5, 4, 3))
    seq, pos = build_sequence(x, y, eos, prompt)
    assert seq.shape == (5, 14, 3) and pos.tolist() == [2, 5, 8, 11]
    assert torch.equal(seq[:, :2], prompt.double().expand(5, 2, 3))
    assert torch.equal(seq[:, 8], x[:, 2]) and torch.equal(seq[:, 9], y[:, 2]) and torch.equal(seq[:, 10], eos.double().expand(5, 3))


def test_least_squares_and_zero_predictor():
    D = 3
    x, y = problems(n=128, D=D, shots=7)
    pred = least_squares_predictions(x, y)
    lsq, zero = fewshot_losses(pred, y), fewshot_losses(torch.zeros_like(y), y)
    assert torch.equal(pred[:, 0], torch.zeros_like(y[:, 0])) and torch.equal(lsq[:, 0], zero[:, 0])  # nothing seen
    assert float(lsq[:, D:].max()) < 1e-16  # D pairs determine W exactly
    assert float(lsq[:, 1].mean()) < float(zero[:, 1].mean())
    assert abs(float(zero.mean()) - D / 6) < 0.05  # 1/2 E||x||^2 with x ~ U(-1, 1)^D
    i = 2  # an underdetermined shot: the minimum-norm fit on the two earlier pairs, solved per task
    for b in range(3):
        A = torch.linalg.pinv(x[b, :i]) @ y[b, :i]  # (D, D)
        assert torch.allclose(pred[b, i], x[b, i] @ A, atol=1e-12)


def gd_closed_form(x, y, eta, eos=None, prompt=None):
    """eta * sum over transitions (s_{t'-1} -> s_t') up to x_i's position of s_t' (s_{t'-1} . x_i),
    written out per layout: (B, S, D)."""
    B, S, D = x.shape
    out = torch.zeros_like(x)
    for i in range(S):
        q = x[:, i]  # (B, D)
        dot = lambda a: (a * q).sum(-1, keepdim=True)  # noqa: E731
        acc = torch.zeros_like(q)
        before_x1 = torch.zeros_like(q)
        if prompt is not None:
            for k in range(prompt.shape[0]):
                acc += prompt[k] * (dot(prompt[k - 1].expand_as(q)) if k else 0)
            before_x1 = prompt[-1].expand_as(q)
        acc += x[:, 0] * dot(before_x1)
        for j in range(i):
            acc += y[:, j] * dot(x[:, j])  # x_j -> y_j
            if eos is None:
                acc += x[:, j + 1] * dot(y[:, j])  # y_j -> x_j+1
            else:
                acc += eos * dot(y[:, j]) + x[:, j + 1] * dot(eos.expand_as(q))  # y_j -> eos -> x_j+1
        out[:, i] = eta * acc
    return out


def test_online_gd_model_matches_its_closed_form():
    D, eta = 3, 0.3
    x, y = problems(n=16, D=D, shots=6, noise_std=0.01)
    model = gd_model(D, eta)
    eos = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)
    prompt = torch.randn(3, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        for tokens in [(None, None), (eos, None), (eos, prompt), (torch.zeros(D, dtype=torch.float64), None)]:
            got = fewshot_predictions(model, x, y, *tokens)
            assert torch.allclose(got, gd_closed_form(x, y, eta, *tokens), atol=1e-5)
        # with a zero EOS only the x_j -> y_j transitions count: one GD step from 0 on the earlier pairs
        one_step = torch.stack([eta * torch.einsum("bjd,bj->bd", y[:, :i], (x[:, :i] * x[:, i:i + 1]).sum(-1))
                                for i in range(6)], dim=1)
        assert torch.allclose(fewshot_predictions(model, x, y, torch.zeros(D, dtype=torch.float64)), one_step,
                              atol=1e-10)


def test_prompt_training_lowers_the_training_loss():
    D = 3
    model = gd_model(D, 0.2)
    params = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(5)
    draw = lambda n: fewshot_problems(n, D, 5, noise_std=0.01, generator=gen, device="cpu", dtype=torch.float64)  # noqa: E731
    init = torch.randn(4, D, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    prompt, info = train_tokens(model, draw, init, learn="prompt", eos=torch.zeros(D, dtype=torch.float64),
                                steps=60, lr=0.05, batch=64)
    assert info["loss_after"] < 0.7 * info["loss_before"], info
    assert prompt.shape == (4, D) and not torch.equal(prompt, init)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))  # the model stays frozen
    assert all(p.requires_grad for p in model.parameters())  # and trainable afterwards
    eos, info = train_tokens(model, draw, torch.ones(D, dtype=torch.float64), learn="eos", steps=60, lr=0.05, batch=64)
    assert info["loss_after"] < info["loss_before"] and eos.shape == (D,)


def test_fewshot_analysis_on_a_trained_model(tmp_path, catalog):
    suite = Suite.single(LinearDynamics(D=3, T=30))
    ctx = AnalysisContext(catalog, suite, 0, torch.device("cpu"), 256, tmp_path)
    spec = ("seq-tf[layers=1,train.steps=150,train.batch_size=64,train.lr=0.01,train.eval_every=50,"
            "train.eval_tasks=64,train.checkpoint_every=50]")
    out = FewShot(learner=spec, shots=8, prompt_tokens=4, prompt_steps=40, prompt_batch=64, eos="learned").run(ctx)
    S = 8
    assert set(out["formats"]) == {"pairs", "eos", "prompt"}
    assert [out["formats"][f]["length"] for f in ("pairs", "eos", "prompt")] == [16, 24, 28]
    assert out["within_trained_length"] and out["trained_length"] == 30
    for s in [*out["formats"].values(), out["least_squares"], out["zero"]]:
        assert len(s["loss"]) == len(s["ci95"]) == S and all(math.isfinite(v) for v in s["loss"])
    lsq, zero = out["least_squares"]["loss"], out["zero"]["loss"]
    assert lsq[0] == pytest.approx(zero[0]) and max(lsq[4:]) < 0.01  # D + 1 = 4 shots on: the noise floor
    pairs = out["formats"]["pairs"]
    assert pairs["loss"][-1] < 0.9 * zero[-1]  # even this tiny model learns in context (0.40 against 0.52)
    assert pairs["gap"]["mean"] == pytest.approx(pairs["mean"] - out["least_squares"]["mean"], abs=1e-9)
    assert out["differences"]["prompt-pairs"]["mean"] == pytest.approx(
        out["formats"]["prompt"]["mean"] - pairs["mean"], abs=1e-9)
    assert out["prompt_training"]["loss_after"] < out["prompt_training"]["loss_before"]
    assert out["eos_training"]["loss_after"] < out["eos_training"]["loss_before"] and len(out["eos"]) == 3
    assert [p.name for p in tmp_path.glob("fewshot-*-seed0.png")] == [out["figure"].rsplit("/", 1)[-1]]
