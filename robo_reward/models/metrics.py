"""How good is a reward model: VOC, success AUC, progress error (RESEARCH.md, "Measuring a reward model")."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr


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
