"""The Episode batch: shape and device validation, dtype conversion, slicing, query replacement."""

from __future__ import annotations

import pytest
import torch

from iclbench.episode import Episode


def make(B=3, N=4, dx=2, dy=1, dtype=torch.float32) -> Episode:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return Episode(r(B, N, dx), r(B, N, dy), r(B, dx), r(B, dy))


def test_properties():
    ep = make(B=3, N=4, dx=2, dy=5)
    assert (ep.batch_size, ep.n_context, ep.dx, ep.dy) == (3, 4, 2, 5)
    assert ep.device == torch.device("cpu")


@pytest.mark.parametrize("field,bad,expected", [
    ("context_x", torch.zeros(3, 4), "context_x must have shape (B, N, dx)"),
    ("context_y", torch.zeros(3, 5, 1), "context_y must have shape (B=3, N=4, dy)"),
    ("query_x", torch.zeros(3, 7), "query_x must have shape (B=3, dx=2)"),
    ("query_y", torch.zeros(2, 1), "query_y must have shape (B=3, dy=1)"),
])
def test_bad_shapes_are_named(field, bad, expected):
    ep = make()
    parts = {f: getattr(ep, f) for f in ("context_x", "context_y", "query_x", "query_y")}
    parts[field] = bad
    with pytest.raises(ValueError) as err:
        Episode(**parts)
    assert expected in str(err.value) and str(tuple(bad.shape)) in str(err.value)


def test_non_tensor_is_rejected():
    ep = make()
    with pytest.raises(TypeError, match="query_y must be a torch.Tensor"):
        Episode(ep.context_x, ep.context_y, ep.query_x, [[0.0]] * 3)


def test_to_slice_and_with_query_x():
    ep = make(B=5)
    ep64 = ep.to(dtype=torch.float64)
    assert ep64.context_x.dtype == ep64.query_y.dtype == torch.float64
    assert torch.equal(ep64.context_y, ep.context_y.double())
    part = ep.slice(1, 3)
    assert part.batch_size == 2 and torch.equal(part.query_x, ep.query_x[1:3])
    q = torch.ones(5, 2)
    moved = ep.with_query_x(q)
    assert torch.equal(moved.query_x, q) and torch.equal(moved.context_x, ep.context_x)
    assert torch.equal(moved.query_y, ep.query_y)
    assert torch.equal(ep.query_x, make(B=5).query_x)  # frozen: the original is untouched
