"""``robo-reward rollout``: evaluate a policy artifact in simulation, run the way a robot runs it (onnxruntime).

    robo-reward rollout artifacts/reach --episodes 50 --video reach.mp4 --json

The story: load and validate the artifact → make the spec's task with the spec's task config → step N
envs with the ONNX policy's actions until every env has finished its share of the episodes → success
rate (the success flag at each episode's last step), mean return (the task's dense reward, as the env
gives it), mean episode length and throughput; optionally film the first few envs into an mp4.

Each env runs a fixed share of the episodes (``episodes`` split evenly over the envs): counting the
first ``episodes`` to finish would over-sample short episodes, which for tasks that end on success
means successful ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sim
from real.artifact import PolicyArtifact
from robo_reward.export import load_checked_artifact
from robo_reward.video import SUCCESS_COLOUR, TEXT_COLOUR, labelled_tile, write_mp4

DEFAULT_NUM_ENVS = 32
VIDEO_ENVS = 4  # envs filmed, one row each
VIDEO_SIZE = (256, 256)  # pixels per camera view


def rollout(
    artifact_dir: str | Path,
    task: str | None = None,
    episodes: int = 50,
    num_envs: int | None = None,
    seed: int = 0,
    video: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of the artifact's policy; return the statistics as plain data.

    ``task`` defaults to the spec's task (with the spec's task config). Another task is accepted only
    if its observation and action sizes match the policy's; it then runs with its own default config.
    ``num_envs`` defaults to min(episodes, 32). ``video``: an mp4 of the first 4 envs, every task
    camera at 256 × 256, until each of them has finished its first episode.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if num_envs is not None and num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    artifact = load_checked_artifact(artifact_dir)
    task_name, config = _task_for(artifact, task)
    n = min(num_envs or DEFAULT_NUM_ENVS, episodes)
    env = sim.make(task_name, num_envs=n, seed=seed, config=config, render_size=VIDEO_SIZE)  # config: checked above
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    with env:
        run = run_episodes(env, artifact, quota, filmed=min(VIDEO_ENVS, n) if video else 0)
    if video:
        write_mp4(video, run.frames, fps=artifact.spec["control_rate_hz"])
    return {
        "artifact": str(artifact.path),
        "task": task_name,
        "episodes": len(run.returns),
        "num_envs": n,
        "seed": seed,
        "success_rate": float(np.mean(run.successes)),
        "mean_return": float(np.mean(run.returns)),
        "mean_length": float(np.mean(run.lengths)),
        "env_steps": run.steps * n,
        "wall_time_s": round(run.wall_s, 3),
        "env_steps_per_s": round(run.steps * n / max(run.wall_s - run.film_s, 1e-9), 1),  # filming excluded
        "video": str(video) if video else None,
    }


@dataclass
class EpisodeRun:
    """What :func:`run_episodes` saw: one entry per counted episode, and the loop's cost."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # tiled (filmed·H, V·W, 3) uint8 per step
    steps: int = 0  # env.step calls
    wall_s: float = 0.0
    film_s: float = 0.0  # of wall_s, spent rendering


def run_episodes(env: sim.BatchedEnv, artifact: PolicyArtifact, quota: np.ndarray, filmed: int) -> EpisodeRun:
    """Step ``env`` with the artifact's actions until env i has finished ``quota[i]`` episodes.

    The first ``filmed`` envs are rendered before every step until each has finished its first episode.
    """
    run = EpisodeRun()
    finished = np.zeros(env.num_envs, dtype=np.int64)
    succeeded = np.zeros(env.num_envs, dtype=np.int64)
    ep_return, ep_length = np.zeros(env.num_envs), np.zeros(env.num_envs, dtype=np.int64)
    film_ids = np.arange(filmed)
    filming = np.ones(filmed, dtype=bool)
    obs = env.observation.numpy()
    start = time.perf_counter()
    while (finished < quota).any():
        if filming.any():
            film_start = time.perf_counter()
            status = [(f"step {ep_length[e]} · episodes {finished[e]} · success {succeeded[e]}",
                       SUCCESS_COLOUR if succeeded[e] else TEXT_COLOUR) for e in film_ids]  # fmt: skip
            run.frames.append(labelled_tile(env.render(film_ids).numpy(), env.cameras,
                                            [f"env {e}" for e in film_ids], status))  # fmt: skip
            run.film_s += time.perf_counter() - film_start
        next_obs, reward, terminated, truncated, info = env.step(artifact.act(obs))
        obs = next_obs.numpy()
        run.steps += 1
        ep_return += reward.numpy()
        ep_length += 1
        done = (terminated | truncated).numpy()
        if done.any():
            counted = done & (finished < quota)
            run.returns += ep_return[counted].tolist()
            run.lengths += ep_length[counted].tolist()
            run.successes += info["success"].numpy()[counted].tolist()
            finished += counted
            succeeded += counted & info["success"].numpy()
            ep_return[done], ep_length[done] = 0.0, 0
            filming &= ~done[film_ids]
    run.wall_s = time.perf_counter() - start
    return run


def _task_for(artifact: PolicyArtifact, task: str | None) -> tuple[str, dict[str, Any] | None]:
    """The task to run and its config: the spec's own, or another task whose sizes fit the policy."""
    if task is None or task == artifact.task:
        return artifact.task, artifact.spec["task_config"]
    if task not in sim.TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(sorted(sim.TASKS))}")
    other = sim.TASKS[task](1)
    if (other.obs_dim, other.act_dim) != (artifact.obs_dim, artifact.act_dim):
        raise ValueError(
            f"{artifact.path}: a {artifact.task!r} policy (obs {artifact.obs_dim}, act {artifact.act_dim}) cannot "
            f"run task {task!r} (obs {other.obs_dim}, act {other.act_dim})"
        )
    return task, None  # the spec's task_config belongs to another task
