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


def episodes_to_plot(success: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` episode indices: half failures and half successes when there are enough of both,
    the other kind filling in when one runs short."""
    wins, losses = np.flatnonzero(success), np.flatnonzero(~success)
    take_losses = min(len(losses), max(count // 2, count - len(wins)))
    return sorted(int(k) for k in [*wins[: count - take_losses], *losses[:take_losses]])


def plot_curves(preds: dict, out: str | Path, count: int) -> None:
    """PNG of the model's progress (solid) against privileged progress (dashed) for up to ``count``
    episodes, successes and failures side by side (half each when the file has both), with the model's
    final success estimate in each legend entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ok = np.asarray(preds["success"], dtype=bool)
    chosen = episodes_to_plot(ok, count)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100, sharey=True)
    for ax, outcome in zip(axes, (True, False), strict=True):
        shown = [k for k in chosen if ok[k] == outcome]
        for k in shown:
            pred, truth = preds["progress"][k], preds["privileged"][k]
            score = preds["success_scores"][k]
            line = ax.plot(np.linspace(0, 1, len(pred)), pred, label=f"demo {k} (success head {score:.2f})")[0]
            if truth is not None:
                ax.plot(np.linspace(0, 1, len(truth)), truth, "--", color=line.get_color(), alpha=0.6)
        title = "successful episodes" if outcome else "failed episodes"
        ax.set_title(f"{title} ({len(shown)} of {int((ok == outcome).sum())})")
        ax.set_xlabel("episode time (normalised)")
        ax.set_ylim(-0.05, 1.05)
        handles = ax.get_legend_handles_labels()[0] + [
            Line2D([], [], color="black", label="model progress"),
            Line2D([], [], color="black", linestyle="--", label="privileged progress (truth)"),
        ]
        ax.legend(handles=handles, fontsize=7, loc="upper left")
    axes[0].set_ylabel("progress")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
