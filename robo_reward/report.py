"""``robo-reward report RUNS...``: policy runs of a sweep (seeds × reward × shaping) as one table and one plot.

Each run is a ``robo-train`` folder (its ``train_summary.json``); a folder holding runs — a Hydra multirun
sweep folder, say — counts as all of them. Runs are grouped by what differs between them except the seed
(e.g. ``reward=prm shaping=pbrs``); a group reports the mean and spread over its seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_reward.runs import flatten

SUMMARY = "train_summary.json"  # robo_reward.train.SUMMARY (not imported: that module pulls in rsl-rl and sim)
# config keys that tell runs of one sweep apart without making them different experiments
NOT_EXPERIMENT = {"seed", "iterations", "resume", "max_wall_s", "progress_bar", "eval_video", "keep_checkpoints",
                  "chunk_iterations", "summary_iterations", "device", "torch_threads"}  # fmt: skip


class ReportError(ValueError):
    """A path that holds no run, or a run file that cannot be read."""


def find_runs(paths: list[str | Path]) -> list[Path]:
    """The run folders (holding ``train_summary.json``) named by ``paths`` or found under them."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ReportError(f"{path}: no such file or folder")
        if (path / SUMMARY).is_file():
            found.append(path)
            continue
        runs = sorted(p.parent for p in path.rglob(SUMMARY))
        if not runs:
            raise ReportError(f"{path}: holds no robo-train run (no {SUMMARY} in it or under it)")
        found += runs
    return list(dict.fromkeys(found))


def load_run(folder: Path) -> dict[str, Any]:
    path = folder / SUMMARY
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: cannot be read ({error})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("history"), list) or "config" not in summary:
        raise ReportError(f"{path}: not a robo-train summary (no history or config)")
    return summary


def group_runs(summaries: list[dict]) -> dict[str, list[dict]]:
    """Runs keyed by the config entries that differ between them, the seed and run-length keys left out."""
    flats = [{k: json.dumps(v, sort_keys=True) for k, v in flatten(s["config"]).items()
              if k.split(".")[0] not in NOT_EXPERIMENT} for s in summaries]  # fmt: skip
    keys = sorted({k for flat in flats for k in flat})
    differing, partitions = [], set()
    for key in keys:  # one key per way of splitting the runs (reward=prm also sets reward.name=prm: name it once)
        values = tuple(flat.get(key) for flat in flats)
        split = tuple(values.index(v) for v in values)
        if len(set(values)) > 1 and split not in partitions:
            partitions.add(split)
            differing.append(key)
    groups: dict[str, list[dict]] = {}
    for summary, flat in zip(summaries, flats, strict=True):
        label = " ".join(f"{k}={json.loads(flat[k]) if k in flat else '-'}" for k in differing) or summary["task"]
        groups.setdefault(label, []).append(summary)
    return groups


def _stats(values: list[float | None]) -> dict[str, Any]:
    known = [float(v) for v in values if v is not None]
    if not known:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(known)), "std": float(np.std(known)), "n": len(known)}


def curve(summary: dict) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, success rate) of the iterations in which episodes ended."""
    rows = [r for r in summary["history"] if r.get("success_rate") is not None]
    return np.array([r["env_steps"] for r in rows], float), np.array([r["success_rate"] for r in rows], float)


def aggregate(groups: dict[str, list[dict]]) -> list[dict[str, Any]]:
    table = []
    for label, runs in groups.items():
        table.append({
            "group": label,
            "seeds": sorted(r["seed"] for r in runs),
            "success_rate_last": _stats([r.get("success_rate_last") for r in runs]),
            "env_steps_to_90": _stats([r.get("env_steps_to_90") for r in runs]),
            "env_steps": _stats([r.get("env_steps") for r in runs]),
            "wall_time_s": _stats([r.get("wall_time_s") for r in runs]),
        })  # fmt: skip
    return table


def _cell(stats: dict, digits: int = 2, scale: float = 1.0) -> str:
    if stats["mean"] is None:
        return "—"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def markdown(table: list[dict], runs: int) -> str:
    lines = ["| group | seeds | success (last iterations) | env steps to 90 % (M; reached/seeds) | wall time (s) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in table:
        reached = row["env_steps_to_90"]
        to_90 = f"{_cell(reached, 2, 1e-6)} ({reached['n']}/{len(row['seeds'])})" if reached["n"] else "— (0)"
        lines.append(f"| {row['group']} | {len(row['seeds'])} | {_cell(row['success_rate_last'])} | {to_90} | "
                     f"{_cell(row['wall_time_s'], 0)} |")  # fmt: skip
    lines.append(f"({runs} runs; mean ± standard deviation over seeds)")
    return "\n".join(lines)


def plot(groups: dict[str, list[dict]], out: Path) -> None:
    """Success rate against env steps: per group the mean over seeds and its min–max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, runs in groups.items():
        curves = [c for c in map(curve, runs) if len(c[0])]
        if not curves:
            continue
        end = min(c[0][-1] for c in curves)
        grid = np.linspace(max(c[0][0] for c in curves), end, 100) if end > 0 else np.array([0.0])
        ys = np.stack([np.interp(grid, x, y) for x, y in curves])
        line = ax.plot(grid, ys.mean(0), label=f"{label} ({len(curves)} seeds)")[0]
        ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)


def report(paths: list[str | Path], plot_path: str | Path | None = None) -> dict[str, Any]:
    folders = find_runs(paths)
    summaries = [load_run(folder) for folder in folders]
    groups = group_runs(summaries)
    table = aggregate(groups)
    result: dict[str, Any] = {"runs": [str(f) for f in folders], "groups": table,
                              "markdown": markdown(table, len(folders))}  # fmt: skip
    if plot_path:
        plot(groups, Path(plot_path))
        result["plot"] = str(plot_path)
    return result
