"""Sequence episodes: the mapping to transitions, no leak of the target, and the loss at every
position computed in one pass, by padding, or per position, all equal."""

from __future__ import annotations

import pytest
import torch

from iclbench.positions import position_curve, position_episode, position_predictions, sequence_episode, states_of
from iclbench_plugins.learners.least_squares import LeastSquares

B, T, D = 64, 12, 3


def random_rotation(gen: torch.Generator, n: int, d: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, d, d, generator=gen, dtype=torch.float64))  # (n, d, d)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


def rollout(W: torch.Tensor, s1: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps, D): s_{t+1} = W s_t, noiseless (a loop in the test's reference only)."""
    out = [s1]
    for _ in range(steps - 1):
        out.append(torch.einsum("bij,bj->bi", W, out[-1]))
    return torch.stack(out, dim=1)


@pytest.fixture(scope="module")
def states():
    gen = torch.Generator().manual_seed(0)
    W = random_rotation(gen, B, D)
    return rollout(W, torch.randn(B, D, generator=gen, dtype=torch.float64), T)


def test_sequence_episode_holds_transitions_and_hides_the_target(states):
    ep = sequence_episode(states)
    assert ep.n_context == T - 2 and ep.dx == ep.dy == D and ep.tokens.shape == (B, T - 1, D)
    assert torch.equal(ep.context_x[:, 4], states[:, 4]) and torch.equal(ep.context_y[:, 4], states[:, 5])
    assert torch.equal(ep.query_x, states[:, -2]) and torch.equal(ep.query_y, states[:, -1])
    assert not any(torch.equal(ep.tokens[:, j], states[:, -1]) for j in range(T - 1))  # s_T is not among the tokens
    assert torch.equal(states_of(ep), states)
    p = position_episode(ep, 5)  # predict s_6 from s_1..s_5
    assert p.n_context == 4 and torch.equal(p.query_x, states[:, 4]) and torch.equal(p.query_y, states[:, 5])
    assert p.tokens.shape == (B, 5, D)
    with pytest.raises(ValueError, match="T >= 3"):
        sequence_episode(states[:, :2])


class LastState:
    """Predicts s_{t+1} = s_t; its one-pass form must equal its per-position form."""

    def predict(self, episode):
        return episode.query_x

    def predict_positions(self, episode):
        return states_of(episode)[:, :-1]


def test_one_pass_padding_and_per_position_agree(states):
    ep = sequence_episode(states)
    per_position = torch.stack([LastState().predict(position_episode(ep, t)) for t in range(1, T)], dim=1)
    assert torch.equal(position_predictions(LastState(), ep, LastState().predict), per_position)
    ls = LeastSquares()
    padded = position_predictions(ls, ep, ls.predict)  # (B, T-1, D) in one batched call
    looped = torch.stack([ls.predict(position_episode(ep, t)) for t in range(1, T)], dim=1)
    assert padded.shape == (B, T - 1, D)
    assert torch.allclose(padded, looped, atol=1e-9, rtol=0)


def test_online_least_squares_recovers_noiseless_dynamics_after_d_transitions(states):
    """With D transitions seen (t = D + 1), least squares knows W exactly; before it, not."""
    ep = sequence_episode(states)
    ls = LeastSquares()
    curve = position_curve(ls, ep, ls.predict)
    assert curve["t"] == list(range(1, T)) and len(curve["loss"]) == T - 1
    assert curve["loss"][0] == pytest.approx(0.5 * states[:, 1].pow(2).sum(-1).mean().item())  # predicts 0 at t = 1
    assert max(curve["loss"][D:]) < 1e-12 and min(curve["loss"][:D]) > 1e-3
    assert curve["mean"] == pytest.approx(sum(curve["loss"]) / (T - 1))


def test_last_state_loss_matches_its_closed_form():
    """E 0.5 ||(W - I) s||^2 = 0.5 (2 D - 2 tr W) |s|^2 / D for a rotation W and s uniform in
    direction: the curve is flat at that value, which a Monte-Carlo mean must meet."""
    gen = torch.Generator().manual_seed(1)
    n = 20000
    W = random_rotation(gen, n, D)
    s1 = torch.randn(n, D, generator=gen, dtype=torch.float64)
    s1 = s1 / s1.norm(dim=-1, keepdim=True)  # |s| = 1, kept by the rotation
    ep = sequence_episode(rollout(W, s1, 5))
    curve = position_curve(LastState(), ep, LastState().predict)
    expected = float((2 * D - 2 * torch.diagonal(W, dim1=-2, dim2=-1).sum(-1)).mean()) * 0.5 / D
    for loss, ci in zip(curve["loss"], curve["ci95"]):
        assert abs(loss - expected) < 2 * ci
    assert expected == pytest.approx(0.5 * 2 * D / D, rel=0.05)  # E tr W = 0 for a Haar rotation
