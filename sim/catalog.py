"""What the task registry holds, measured: one row per task (``robo-reward info tasks``) and a frame grid
of every task (``robo-reward render-tasks``)."""

from __future__ import annotations

from typing import Any

import numpy as np

import sim
from sim.tasks import TASKS, task_class


def expert_success(task: str, episodes: int = 32, seed: int = 0) -> float:
    """Success rate of the task's scripted expert over ``episodes`` episodes, run side by side (one per env)."""
    if not task_class(task).has_expert():
        raise ValueError(f"task {task!r} has no scripted expert")
    with sim.make(task, num_envs=episodes, seed=seed) as env:
        obs, outcome, pending = env.reset(), np.zeros(episodes, dtype=bool), np.ones(episodes, dtype=bool)
        while pending.any():
            obs, _, terminated, truncated, info = env.step(env.expert(obs))
            ended = (terminated | truncated).numpy() & pending
            outcome[ended] = info["success"].numpy()[ended]
            pending &= ~ended
    return float(outcome.mean())


def task_rows(measure_episodes: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """One dict per registered task: id, Gymnasium id, dims, cameras, stages, episode length, and the expert's
    success measured now over ``measure_episodes`` episodes (None: no expert, or measuring off with 0)."""
    rows = []
    for name, cls in TASKS.items():
        config = cls.default_config()
        measured = None
        if measure_episodes > 0 and cls.has_expert():
            measured = expert_success(name, measure_episodes, seed)
        rows.append(
            {
                "task": name,
                "gym_id": cls.gym_id,
                "obs_dim": cls.obs_dim,
                "act_dim": cls.act_dim,
                "cameras": list(cls.cameras),
                "stages": list(cls.stage_names),
                "max_episode_steps": int(config["max_episode_steps"]),
                "instruction": cls.instruction,
                "has_expert": cls.has_expert(),
                "expert_success": measured,
                "expert_episodes": measure_episodes if measured is not None else 0,
            }
        )
    return rows


def frame_grid(tasks: list[str] | None = None, size: int = 128, seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): one row per task — every camera at the start of an episode, then (tasks with an expert)
    every camera at the last step of the expert's episode; the task's id is written on its first tile."""
    from PIL import Image, ImageDraw

    names = list(tasks) if tasks else list(TASKS)
    for name in names:
        task_class(name)  # one line naming the valid tasks for an unknown one
    rows = []
    for name in names:
        with sim.make(name, num_envs=1, seed=seed, render_size=(size, size)) as env:
            obs = env.reset()
            tiles = list(env.render()[0].numpy())
            if env.task.has_expert():
                for _ in range(env.max_episode_steps - 1):
                    obs, *_ = env.step(env.expert(obs))
                tiles += list(env.render()[0].numpy())
        rows.append(tiles)
    width = max(len(tiles) for tiles in rows)
    grid = np.zeros((len(rows) * size, width * size, 3), dtype=np.uint8)
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            grid[r * size : (r + 1) * size, c * size : (c + 1) * size] = tile
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    for r, name in enumerate(names):
        draw.rectangle((0, r * size, 7 * len(name) + 4, r * size + 12), fill=(0, 0, 0))
        draw.text((2, r * size), name, fill=(255, 255, 255))
    return np.asarray(image)


def write_frame_grid(out: str, tasks: list[str] | None = None, size: int = 128, seed: int = 0) -> dict[str, Any]:
    """Write :func:`frame_grid` as a PNG at ``out``; return what was written."""
    from pathlib import Path

    from PIL import Image

    grid = frame_grid(tasks, size, seed)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path, optimize=True)
    return {"out": str(path), "tasks": tasks or list(TASKS), "height": grid.shape[0], "width": grid.shape[1]}


__all__ = ["expert_success", "frame_grid", "task_rows", "write_frame_grid"]
