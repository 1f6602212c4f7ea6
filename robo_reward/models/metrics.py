"""How good is a reward model: VOC, success AUC, progress error, and the EPIC distance between two rewards
(VOC after GVL, success AUC, EPIC after Gleave et al.)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr

# R(s, a, s') over batches: obs (B, obs_dim), actions (B, act_dim), next obs (B, obs_dim) → (B,)
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def voc(progress: np.ndarray) -> float:
    """Value-order correlation: Spearman of predicted progress with frame index (1 is perfect)."""
    if len(progress) < 3 or np.ptp(progress) == 0:
        return 0.0
    return float(spearmanr(progress, np.arange(len(progress))).statistic)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann–Whitney rank statistic (ties count half); NaN without both classes."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def episode_metrics(progress: list[np.ndarray], success_scores: np.ndarray, success: np.ndarray,
                    privileged: list[np.ndarray | None]) -> dict:  # fmt: skip
    """Aggregate per-episode predictions into the numbers `robo-reward eval` reports."""
    success = np.asarray(success, dtype=bool)
    vocs = [voc(p) for p, ok in zip(progress, success, strict=True) if ok]
    result = {
        "episodes": len(progress),
        "success_episodes": int(success.sum()),
        "voc": float(np.mean(vocs)) if vocs else float("nan"),
        "success_auc": auc(success_scores, success),
        "final_progress_auc": auc(np.array([p[-1] for p in progress]), success),
    }
    pairs = [(p, q) for p, q in zip(progress, privileged, strict=True) if q is not None]
    if pairs:
        pred = np.concatenate([p for p, _ in pairs])
        truth = np.concatenate([q for _, q in pairs])
        result["progress_mae"] = float(np.abs(pred - truth).mean())
        result["progress_spearman"] = float(spearmanr(pred, truth).statistic)
    return result


def canonicalize(reward: RewardFn, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor,
                 cover_obs: torch.Tensor, cover_act: torch.Tensor, gamma: float) -> torch.Tensor:  # fmt: skip
    """EPIC's canonical reward, float64 (B,), for transitions (obs, act, next_obs) (B, ·):

        C(R)(s, a, s') = R(s, a, s') + E[γ R(s', A, S') − R(s, A, S') − γ R(S, A, S')]

    with the expectation over the M coverage samples: A_j = ``cover_act`` (M, act_dim), S'_j =
    ``cover_obs`` (M, obs_dim) and S_j = the same states in another order. S and S' thus have the same
    sample mean, so a potential-shaping term γΦ(s') − Φ(s) cancels to rounding error, as it does in
    the exact expectation.
    """
    samples = len(cover_obs)
    shuffled = cover_obs[torch.roll(torch.arange(samples), 1)]
    mean_r = reward(shuffled, cover_act, cover_obs).double().mean()
    rows = max(1, 65_536 // samples)  # transitions per chunk: rows × M evaluations at once
    out = []
    for start in range(0, len(obs), rows):
        part = slice(start, start + rows)
        s, s_next = obs[part], next_obs[part]
        b = len(s)
        a_m = cover_act.expand(b, *cover_act.shape).reshape(b * samples, -1)
        s2_m = cover_obs.expand(b, *cover_obs.shape).reshape(b * samples, -1)
        from_next = reward(s_next.repeat_interleave(samples, 0), a_m, s2_m).double().view(b, samples).mean(1)
        from_s = reward(s.repeat_interleave(samples, 0), a_m, s2_m).double().view(b, samples).mean(1)
        direct = reward(s, act[part], s_next).double()
        out.append(direct + gamma * from_next - from_s - gamma * mean_r)
    return torch.cat(out)


def epic_distance(r1: RewardFn, r2: RewardFn, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, *,
                  gamma: float, samples: int = 256, seed: int = 0) -> float:  # fmt: skip
    """EPIC pseudometric D = sqrt((1 − ρ) / 2) in [0, 1] between two rewards on transitions (B, ·), ρ the
    Pearson correlation of their canonical rewards (:func:`canonicalize`). The coverage distribution is
    ``samples`` states drawn from the transitions' obs and next obs and ``samples`` of their actions.
    0 means equal up to potential shaping and positive scaling (Gleave et al.)."""
    gen = torch.Generator().manual_seed(seed)
    states = torch.cat([obs, next_obs])
    cover_obs = states[torch.randint(len(states), (samples,), generator=gen)]
    cover_act = act[torch.randint(len(act), (samples,), generator=gen)]
    c1 = canonicalize(r1, obs, act, next_obs, cover_obs, cover_act, gamma)
    c2 = canonicalize(r2, obs, act, next_obs, cover_obs, cover_act, gamma)
    c1, c2 = c1 - c1.mean(), c2 - c2.mean()
    norm = c1.norm() * c2.norm()
    if norm == 0:
        raise ValueError("a reward is constant on these transitions (after canonicalisation): EPIC is undefined")
    rho = float((c1 @ c2) / norm)
    return float(np.sqrt(max(0.0, (1.0 - rho) / 2.0)))
