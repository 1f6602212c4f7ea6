"""``robo-reward eval``: a reward model's progress on every episode of a demo file, and its metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robo_reward.data.reader import DemoReader
from robo_reward.models.metrics import episode_metrics
from robo_reward.models.protocol import RewardModel


def predict_episodes(model: RewardModel, path: str | Path, batch: int = 512) -> dict:
    """Per-episode progress (T,) and final-frame success scores of ``model`` on ``path``."""
    cameras = list(model.cameras)
    progress, success_scores, success, privileged = [], [], [], []
    with DemoReader(path) as reader:
        usable = [c for c in cameras if c in reader.cameras]
        if not usable:
            raise ValueError(f"{path}: has none of the model's cameras {cameras} (it has {reader.cameras})")
        for i in range(len(reader)):
            frames = reader.multiview(i, cameras=usable)
            preds = [
                model.predict(frames[s : s + batch], reader.instruction, usable) for s in range(0, len(frames), batch)
            ]
            progress.append(np.concatenate([p["progress"].numpy() for p in preds]))
            success_scores.append(float(preds[-1]["success"][-1]))
            success.append(reader.success(i))
            privileged.append(reader.privileged(i, "progress"))
    return {"progress": progress, "success_scores": np.array(success_scores), "success": np.array(success),
            "privileged": privileged, "cameras": usable}  # fmt: skip


def evaluate(model: RewardModel, path: str | Path, plot: str | Path | None = None, plot_episodes: int = 6) -> dict:
    preds = predict_episodes(model, path)
    metrics = episode_metrics(preds["progress"], preds["success_scores"], preds["success"], preds["privileged"])
    metrics["cameras"] = preds["cameras"]
    if plot:
        plot_curves(preds, plot, plot_episodes)
        metrics["plot"] = str(plot)
    return metrics


def plot_curves(preds: dict, out: str | Path, count: int) -> None:
    """PNG of predicted (solid) and privileged (dashed) progress for the first ``count`` episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for k, (pred, truth, ok) in enumerate(zip(preds["progress"], preds["privileged"], preds["success"], strict=True)):
        if k >= count:
            break
        line = ax.plot(np.linspace(0, 1, len(pred)), pred, label=f"demo {k} ({'success' if ok else 'failure'})")[0]
        if truth is not None:
            ax.plot(np.linspace(0, 1, len(truth)), truth, "--", color=line.get_color(), alpha=0.5)
    ax.set_xlabel("episode time (normalised)")
    ax.set_ylabel("progress")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("predicted (solid) vs privileged (dashed) progress")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
