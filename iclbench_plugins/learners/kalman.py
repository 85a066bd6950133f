"""`kalman`: the oracle one-step predictor of a known linear dynamical system (task `lds`).

It reads `episode.truth` (W, C, sigma, r, active), which competing learners must not, and runs
a Kalman filter on the observed sequence o_t = C s_t, s_{t+1} = W s_t + sigma * eps:

- prior of s_1: mean 0, covariance (r^2 / 3) I on the `active` coordinates, 0 elsewhere (the
  variance of U(-r, r)); process noise Q = sigma^2 I on the active coordinates;
- observation noise: none in the task, but a tiny variance R = `jitter` x (the prior variance of
  an observation, tr(C P_1 C^T) / obs) keeps the innovation covariance C P C^T + R invertible
  (when obs > active, or once the state is known exactly);
- prediction of o_{t+1} from o_1..o_t: C W m_t, m_t the filtered mean of s_t.

The Gaussian prior is the only approximation. The filter is linear in the observations and its
covariances use only second moments, so with the task's uniform s_1 it is the optimal *linear*
predictor, its stated error covariance is exact, and it is Bayes-optimal once the observations
pin the state down and the prior no longer matters (fully observed: from t = 1). The task's clip
(states clipped to +-10) is ignored: it is nonlinear, and rarely binds.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import is_sequence, states_of

NEEDS = ("W", "C", "noise_std", "init_range", "active")


def kalman_filter(obs: torch.Tensor, truth: dict[str, torch.Tensor], jitter: float = 1e-8
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations (B, T+1, obs) -> the predictions of o_{t+1} from o_1..o_t, (B, T, obs), and
    the filter's covariance of their errors, C (W P_t W^T + Q) C^T, (B, T, obs, obs), t = 1..T.
    Float64 inside, batched over tasks, one loop over time; o_{T+1} is never read."""
    o = obs.double()  # (B, T+1, p)
    B, T1, p = o.shape
    W, C = truth["W"].double(), truth["C"].double()  # (B, D, D), (B, p, D)
    D = W.shape[-1]
    if W.shape != (B, D, D) or C.shape != (B, p, D):
        raise ValueError(f"kalman: truth W {tuple(W.shape)} and C {tuple(C.shape)} do not fit "
                         f"observations {tuple(o.shape)}")
    moving = (torch.arange(D, device=o.device) < truth["active"].double()[:, None]).double()  # (B, D)
    P = torch.diag_embed(moving * (truth["init_range"].double() ** 2 / 3)[:, None])  # (B, D, D) prior of s_1
    Q = torch.diag_embed(moving * (truth["noise_std"].double() ** 2)[:, None])  # (B, D, D)
    Ct = C.transpose(1, 2)  # (B, D, p)
    scale = torch.diagonal(C @ P @ Ct, dim1=-2, dim2=-1).mean(-1)  # (B,) prior variance of an observation
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    R = jitter * scale[:, None, None] * torch.eye(p, dtype=o.dtype, device=o.device)  # (B, p, p)
    eye = torch.eye(D, dtype=o.dtype, device=o.device)
    m = o.new_zeros(B, D)  # predicted mean of s_t before seeing o_t
    preds, covs = [], []
    for t in range(T1 - 1):
        S = C @ P @ Ct + R  # (B, p, p) innovation covariance of o_t
        K = torch.linalg.solve(S, C @ P).transpose(1, 2)  # (B, D, p) gain P C^T S^-1 (S, P symmetric)
        m = m + (K @ (o[:, t] - (C @ m[..., None])[..., 0])[..., None])[..., 0]  # (B, D) filtered mean
        A = eye - K @ C  # (B, D, D)
        P = A @ P @ A.transpose(1, 2) + K @ R @ K.transpose(1, 2)  # Joseph form: stays PSD
        m = (W @ m[..., None])[..., 0]  # (B, D) predicted mean of s_{t+1}
        P = W @ P @ W.transpose(1, 2) + Q
        P = 0.5 * (P + P.transpose(1, 2))
        preds.append((C @ m[..., None])[..., 0])  # (B, p)
        covs.append(C @ P @ Ct)  # (B, p, p)
    return torch.stack(preds, 1), torch.stack(covs, 1)


class KalmanFilter(iclbench.Learner):
    """Oracle reference: the Kalman filter of the episode's own system (module docstring)."""

    name = "kalman"

    class Config(iclbench.LearnerConfig):
        jitter: float = Field(1e-8, gt=0, description="observation noise variance, relative to the prior "
                              "variance of an observation; keeps the innovation covariance invertible")

    def system(self, episode: iclbench.Episode) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The observed sequence (B, T+1, obs) and the truth, or a ValueError saying what is missing."""
        if not is_sequence(episode):
            raise ValueError(f"{self.name}: needs a sequence episode (task lds), got token_format "
                             f"{episode.token_format!r}")
        if episode.truth is None:
            raise ValueError(f"{self.name}: the episode carries no truth (the system's W, C, noise); only "
                             "the lds task's linear teacher provides it")
        missing = [k for k in NEEDS if k not in episode.truth]
        if missing:
            raise ValueError(f"{self.name}: episode.truth lacks {', '.join(missing)}")
        return states_of(episode), episode.truth

    def predict_positions(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, T, obs): at [:, t-1] the prediction of o_{t+1} from o_1..o_t."""
        obs, truth = self.system(episode)
        return kalman_filter(obs, truth, self.config.jitter)[0].to(episode.query_x.dtype)

    def predicted_covariances(self, episode: iclbench.Episode) -> torch.Tensor:
        """(B, T, obs, obs), float64: the filter's covariance of each prediction's error."""
        obs, truth = self.system(episode)
        return kalman_filter(obs, truth, self.config.jitter)[1]

    def predict(self, episode: iclbench.Episode) -> torch.Tensor:
        return self.predict_positions(episode)[:, -1]


@iclbench.hookimpl
def register_learners(register) -> None:
    register(KalmanFilter)
