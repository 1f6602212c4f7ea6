"""Learning curves as PNG: one run's success and return, and a benchmark's variants over seeds.

Curves are drawn against env steps (sample efficiency) and wall time (what a run costs on this machine).
Per-iteration success rates are noisy — an iteration sees few episodes — so each line is a running
average over ``smooth`` iterations weighted by episodes (successes / episodes over the window), with the
raw per-iteration points drawn faintly behind it. Iterations in which no episode ended have no value and
are skipped, not drawn as zero.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from robo_reward.data.writer import publish, remove_stale_temps

AXES = (("env_steps", "env steps"), ("wall_s", "wall time (s)"))
GRID_POINTS = 200  # x positions at which seeds are resampled before averaging


def smoothed(history: Sequence[Mapping[str, Any]], key: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode-weighted running mean of ``key`` (``success_rate``, ``mean_return`` or ``task_return``).

    Returns ``(row_index, value)``, both (K,) for the K rows where the window holds an episode; row
    ``i``'s value averages rows ``i - window + 1 .. i`` by their ``episodes`` count.
    """
    values = np.array([np.nan if row.get(key) is None else float(row[key]) for row in history])
    episodes = np.array([float(row.get("episodes") or 0) for row in history])
    has = ~np.isnan(values) & (episodes > 0)
    weighted = np.where(has, np.nan_to_num(values) * episodes, 0.0)
    count = np.where(has, episodes, 0.0)
    kernel = np.ones(max(1, window))
    total = np.convolve(weighted, kernel)[: len(history)]
    n = np.convolve(count, kernel)[: len(history)]
    index = np.flatnonzero(n > 0)
    return index, total[index] / n[index]


def plot_learning_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str, smooth: int = 5) -> Path:
    """Write a 2×2 PNG: success rate (top) and mean return (bottom) vs env steps (left) and wall time (right).

    ``history`` rows carry ``env_steps``, ``wall_s``, ``episodes``, ``success_rate``, ``mean_return``
    (the shaped return the learner saw) and optionally ``task_return`` (unshaped), drawn dashed.
    """
    fig = Figure(figsize=(11, 7.5))  # a bare Figure renders with Agg: no pyplot, no global backend
    axes = fig.subplots(2, 2, sharex="col", squeeze=False)
    has_task = any(row.get("task_return") is not None for row in history)
    for col, (x_key, x_label) in enumerate(AXES):
        x = np.array([float(row[x_key]) for row in history])
        _plot_metric(axes[0, col], history, x, "success_rate", smooth, "C0", "success rate")
        _plot_metric(axes[1, col], history, x, "mean_return", smooth, "C1", "return (learner, shaped)")
        if has_task:
            _plot_metric(axes[1, col], history, x, "task_return", smooth, "C2", "return (task, unshaped)", "--")
        axes[0, col].set_ylim(-0.03, 1.03)
        axes[0, col].set_ylabel("success rate")
        axes[1, col].set_ylabel("mean episode return")
        axes[1, col].set_xlabel(x_label)
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{title} — lines: mean over {smooth} iterations (episode-weighted); dots: per iteration")
    return _save(fig, path)


def plot_comparison(
    runs: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]],
    path: str | Path,
    title: str = "success rate by variant",
    smooth: int = 5,
) -> Path:
    """Write a PNG comparing variants: success rate vs env steps and vs wall time.

    ``runs`` maps ``(variant, seed)`` to that run's history. Each seed's smoothed curve is resampled on a
    common x grid up to the shortest seed's end (so every point averages all seeds); the line is the
    mean over seeds and the band spans their min and max.
    """
    by_variant: dict[str, list[Sequence[Mapping[str, Any]]]] = {}
    for (variant, _seed), history in sorted(runs.items()):
        by_variant.setdefault(variant, []).append(history)
    fig = Figure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2, squeeze=False)
    for col, (x_key, x_label) in enumerate(AXES):
        ax = axes[0, col]
        for k, (variant, histories) in enumerate(by_variant.items()):
            curves = []
            for history in histories:
                index, values = smoothed(history, "success_rate", smooth)
                if len(index):
                    curves.append((np.array([float(history[i][x_key]) for i in index]), values))
            if not curves:
                continue
            end = min(x[-1] for x, _ in curves)
            grid = np.linspace(min(x[0] for x, _ in curves), end, GRID_POINTS)
            stacked = np.stack([np.interp(grid, x, y) for x, y in curves])
            colour = f"C{k % 10}"
            ax.plot(grid, stacked.mean(axis=0), color=colour, label=f"{variant} (n={len(curves)} seeds)")
            ax.fill_between(grid, stacked.min(axis=0), stacked.max(axis=0), color=colour, alpha=0.2, lw=0)
        ax.set_xlabel(x_label)
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{title} — mean over seeds, band: min–max; each seed smoothed over {smooth} iterations")
    return _save(fig, path)


def _plot_metric(
    ax: Axes,
    history: Sequence[Mapping[str, Any]],
    x: np.ndarray,
    key: str,
    smooth: int,
    colour: str,
    label: str,
    style: str = "-",
) -> None:
    raw = [(x[i], float(row[key])) for i, row in enumerate(history) if row.get(key) is not None]
    if raw:
        ax.plot(*zip(*raw, strict=True), ".", color=colour, alpha=0.25, ms=3)
    index, values = smoothed(history, key, smooth)
    if len(index):
        ax.plot(x[index], values, style, color=colour, label=label)


def _save(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` to ``path`` as PNG through a synced temp file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.tight_layout()
        fig.savefig(tmp, format="png", dpi=100)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
