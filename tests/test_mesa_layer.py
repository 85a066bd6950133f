"""The mesa-layer against a per-position ridge-regression reference, its limits, causality and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from iclbench_plugins.transformers.nn.mesa_layer import (
    mesa_attention,
    preconditioned_queries_sherman_morrison,
    preconditioned_queries_solve,
)
from iclbench_plugins.transformers.sequence import CausalAttention

F64 = torch.float64
METHODS = ["sherman-morrison", "solve"]
PRECONDITIONERS = {
    "sherman-morrison": preconditioned_queries_sherman_morrison,
    "solve": preconditioned_queries_solve,
}


def inputs(B, H, T, dk, dv, seed, dtype=F64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, T, d, generator=g, dtype=dtype) for d in (dk, dk, dv))
    if requires_grad:
        for x in (q, k, v):
            x.requires_grad_(True)
    return q, k, v


def reference(q, k, v, lam):
    """Plain loops: at every (b, h, t) solve the ridge problem on the prefix and read it out at q_t."""
    B, H, T, dk = q.shape
    qt, out = torch.zeros_like(q), torch.zeros(B, H, T, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                K, V = k[b, h, : t + 1], v[b, h, : t + 1]  # (t+1, dk), (t+1, dv)
                S = K.T @ K + lam[h] * torch.eye(dk, dtype=q.dtype)
                qt[b, h, t] = torch.linalg.solve(S, q[b, h, t])
                Phi = torch.linalg.solve(S, K.T @ V).T  # (dv, dk) = (V^T K) S^{-1}, S symmetric
                out[b, h, t] = Phi @ q[b, h, t]
    return qt, out


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


# T > dk and T < dk; one lambda per head in {0.01, 1, 10}.
SHAPES = [(2, 3, 7, 4, 2), (2, 3, 3, 5, 3)]
LAM = torch.tensor([0.01, 1.0, 10.0], dtype=F64)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", METHODS)
def test_matches_per_position_ridge_reference(shape, method):
    q, k, v = inputs(*shape, seed=sum(shape))
    qt_ref, out_ref = reference(q, k, v, LAM)
    assert rel_err(PRECONDITIONERS[method](q, k, LAM), qt_ref) < 1e-6
    out = mesa_attention(q, k, v, LAM, method=method)
    assert out.shape == out_ref.shape and out.dtype == F64
    assert rel_err(out, out_ref) < 1e-6
    # each head separately, so the strong-ridge head cannot hide errors in the weak one
    for h in range(3):
        assert rel_err(out[:, h], out_ref[:, h]) < 1e-6


@pytest.mark.parametrize("dk", [4, 20])
def test_auto_agrees_with_both_methods(dk):
    q, k, v = inputs(2, 2, 6, dk, 3, seed=dk)
    lam = torch.tensor([0.5, 2.0], dtype=F64)
    auto = mesa_attention(q, k, v, lam)
    for method in METHODS:
        assert rel_err(auto, mesa_attention(q, k, v, lam, method=method)) < 1e-10


@pytest.mark.parametrize("method", METHODS)
def test_causal(method):
    q, k, v = inputs(2, 3, 8, 3, 2, seed=5)
    out = mesa_attention(q, k, v, LAM, method=method)
    j = 4
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    q2[:, :, j] += 1.0
    k2[:, :, j] -= 0.7
    v2[:, :, j] *= -2.0
    out2 = mesa_attention(q2, k2, v2, LAM, method=method)
    assert torch.equal(out2[:, :, :j], out[:, :, :j])
    # k_j enters every later ridge fit, so every position t >= j moves
    moved = (out2[:, :, j:] - out[:, :, j:]).abs().amax(dim=(0, 1, 3))  # (T - j,)
    assert bool((moved > 1e-6).all())


@pytest.mark.parametrize("method", METHODS)
def test_vanishing_ridge_is_least_squares(method):
    B, H, T, dk, dv = 2, 2, 12, 4, 3
    q, k, v = inputs(B, H, T, dk, dv, seed=11)
    lam = torch.full((H,), 1e-9, dtype=F64)
    out = mesa_attention(q, k, v, lam, method=method)
    for b in range(B):
        for h in range(H):
            W = torch.linalg.lstsq(k[b, h], v[b, h]).solution  # (dk, dv): v ~ k W
            pred = q[b, h, -1] @ W  # (dv,)
            assert rel_err(out[b, h, -1], pred) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_huge_ridge_is_linear_attention(method):
    q, k, v = inputs(2, 2, 6, 3, 2, seed=13)
    lam = torch.tensor([1e8, 3e9], dtype=F64)
    out = mesa_attention(q, k, v, lam, method=method)
    scores = (q @ k.transpose(-1, -2)).tril()  # (B, H, T, T): k_t'^T q_t for t' <= t
    linear = scores @ v  # (B, H, T, dv)
    assert rel_err(lam.view(1, -1, 1, 1) * out, linear) < 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(method):
    q, k, v = inputs(1, 2, 4, 3, 2, seed=17, requires_grad=True)
    lam = torch.tensor([0.5, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v, lam: mesa_attention(q, k, v, lam, method=method), (q, k, v, lam)
    )
    assert torch.autograd.gradcheck(PRECONDITIONERS[method], (q, k, lam))


def test_methods_have_equal_gradients():
    grads = {}
    for method in METHODS:
        q, k, v = inputs(2, 3, 6, 4, 3, seed=19, requires_grad=True)
        lam = LAM.clone().requires_grad_(True)
        w = torch.randn(2, 3, 6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
        (mesa_attention(q, k, v, lam, method=method) * w).sum().backward()
        grads[method] = [x.grad for x in (q, k, v, lam)]
    for a, b in zip(grads["sherman-morrison"], grads["solve"]):
        assert rel_err(a, b) < 1e-8


def test_bad_method_names_it():
    q, k, v = inputs(1, 1, 3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="cholesky-please"):
        mesa_attention(q, k, v, torch.ones(1, dtype=F64), method="cholesky-please")
    layer = CausalAttention(8, 2, 4, "mesa", 0.02)
    layer.method = "nope"
    with pytest.raises(ValueError, match="nope"):
        layer(torch.randn(1, 3, 8))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_mesa_layer_shapes_and_dtypes(dtype):
    torch.manual_seed(0)
    layer = CausalAttention(12, 3, 5, "mesa", 0.3).to(dtype)
    with torch.no_grad():
        layer.log_lambda.fill_(math.log(0.3))
    assert layer.W_Q.weight.shape == (15, 12) and layer.P.weight.shape == (12, 15)
    assert layer.W_Q.bias is None and layer.P.bias is None
    e = torch.randn(4, 9, 12, dtype=dtype)
    out = layer(e)
    assert out.shape == (4, 9, 12) and out.dtype == dtype
    assert bool(torch.isfinite(out).all())
    assert torch.allclose(layer.log_lambda.exp(), torch.full((3,), 0.3, dtype=dtype))
    # not residual: the layer returns only the update (zero output projection -> zero update)
    with torch.no_grad():
        layer.P.weight.zero_()
    assert bool((layer(e) == 0).all())


def test_mesa_layer_head_split():
    layer = CausalAttention(8, 2, 4, "mesa", 0.5).double()
    e = torch.randn(2, 5, 8, dtype=F64)
    q, k, v = (layer.split(W(e)) for W in (layer.W_Q, layer.W_K, layer.W_V))  # (2, 2, 5, 4)
    _, ref = reference(q.detach(), k.detach(), v.detach(), layer.log_lambda.exp().detach())  # (2, 2, 5, 4)
    expect = layer.P(ref.transpose(1, 2).reshape(2, 5, 8))
    assert rel_err(layer(e).detach(), expect.detach()) < 1e-8


def test_lambda_stays_positive_under_training():
    torch.manual_seed(1)
    layer = CausalAttention(6, 2, 3, "mesa", 0.5)  # lambda = 1 at init
    opt = torch.optim.Adam([layer.log_lambda], lr=1.0)
    e = torch.randn(8, 7, 6)
    for _ in range(8):
        opt.zero_grad()
        (-layer(e).pow(2).mean()).backward()  # weaker ridge, bigger output: pushes lambda to 0
        assert layer.log_lambda.grad is not None and bool(layer.log_lambda.grad.ne(0).all())
        opt.step()
        assert bool((layer.log_lambda.exp() > 0).all())
    assert bool((layer.log_lambda < -4).all())  # well below log(1) = 0, yet lambda > 0
    with torch.no_grad():
        layer.log_lambda.copy_(torch.tensor([-30.0, 30.0]))  # any real log_lambda is a valid ridge
    lam = layer.log_lambda.exp()
    assert bool((lam > 0).all()) and bool(torch.isfinite(lam).all())
