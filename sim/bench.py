"""Benchmarks of the batched env, each against a baseline measured in the same run.

The machine is noisy (±30 % between runs), so both sides are measured in alternating rounds and the
ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import statistics
import time

import gymnasium
import mujoco
import numpy as np
import torch
from mujoco import rollout

import sim
from sim.render import disable_costly_effects


def _rounds(measure_a, measure_b, rounds: int) -> tuple[float, float, float]:
    """Alternate two rate measurements; return (median a, median b, median of a/b per round)."""
    a, b = [], []
    for _ in range(rounds):
        a.append(measure_a())
        b.append(measure_b())
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b, strict=True))


def _random_actions(env: sim.BatchedEnv, steps: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(steps, env.num_envs, env.act_dim, generator=gen) * 2 - 1


def _controls_like_env(env: sim.BatchedEnv, actions: torch.Tensor) -> np.ndarray:
    """The actuator controls (N, steps * substeps, nu) the env would apply for ``actions``."""
    saved = env.physics.ctrl.copy()
    per_step = []
    for act in actions.numpy().astype(np.float64):
        env.task.apply_action(act)
        per_step.append(env.physics.ctrl.copy())
    env.physics.ctrl[:] = saved
    ctrl = np.stack(per_step, axis=1)  # (N, steps, nu)
    return np.repeat(ctrl, env.task.substeps, axis=1)


def bench_sim(task: str, num_envs: int = 64, steps: int = 200, rounds: int = 3, seed: int = 0) -> dict:
    """Our env-steps/s with random actions vs the raw ``mujoco.rollout`` bound and a gymnasium peer."""
    env = sim.make(task, num_envs=num_envs, seed=seed)
    actions = _random_actions(env, steps, seed)
    for act in actions[:5]:  # warm up threads and caches
        env.step(act)

    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros((num_envs, mujoco.mj_stateSize(env.model, spec)))
    for i, data in enumerate(env.physics.datas):
        mujoco.mj_getState(env.model, data, state0[i], spec)
    control = _controls_like_env(env, actions)
    pool = rollout.Rollout(nthread=2)
    pool_datas = [mujoco.MjData(env.model) for _ in range(2)]
    pool.rollout(env.model, pool_datas, state0, control[:, :10])  # warm up the pool

    def ours() -> float:
        start = time.perf_counter()
        for act in actions:
            env.step(act)
        return num_envs * steps / (time.perf_counter() - start)

    def bound() -> float:
        start = time.perf_counter()
        pool.rollout(env.model, pool_datas, state0, control)
        return num_envs * steps / (time.perf_counter() - start)

    ours_rate, bound_rate, ratio_bound = _rounds(ours, bound, rounds)
    pool.close()
    peer_rate = bench_peer(task, num_envs, max(20, steps // 4), seed)
    env.close()
    return {
        "task": task,
        "num_envs": num_envs,
        "env_steps_per_s": round(ours_rate, 1),
        "bound_steps_per_s": round(bound_rate, 1),
        "ratio_vs_bound": round(ratio_bound, 3),
        "peer_steps_per_s": round(peer_rate, 1),
        "ratio_vs_peer": round(ours_rate / peer_rate, 3),
    }


def bench_peer(task: str, num_envs: int, steps: int, seed: int = 0) -> float:
    """Env-steps/s of a gymnasium ``SyncVectorEnv`` of ``num_envs`` single envs.

    For ``ant`` the peer is gymnasium's own Ant-v5 (same MJCF and frame skip); for the other tasks it
    is our own gymnasium single env, one per copy.
    """
    env_id = "Ant-v5" if task == "ant" else sim.TASKS[task].gym_id
    vec = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(env_id) for _ in range(num_envs)])
    vec.reset(seed=seed)
    vec.action_space.seed(seed)
    acts = [vec.action_space.sample() for _ in range(steps)]
    for act in acts[:3]:
        vec.step(act)
    start = time.perf_counter()
    for act in acts:
        vec.step(act)
    rate = num_envs * steps / (time.perf_counter() - start)
    vec.close()
    return rate


def bench_render(
    task: str, num_envs: int = 64, cameras: tuple[str, ...] | None = None, size: int = 64, rounds: int = 3
) -> dict:
    """Our batched multi-view render vs a bare ``mujoco.Renderer`` loop at the same settings."""
    env = sim.make(task, num_envs=num_envs, cameras=cameras, render_size=(size, size))
    cams = env.cameras
    env.render()  # builds the renderer
    bare = mujoco.Renderer(env.model, size, size)
    disable_costly_effects(bare.scene)
    frames = num_envs * len(cams)
    out = np.empty((size, size, 3), dtype=np.uint8)

    def ours() -> float:
        start = time.perf_counter()
        env.render()
        return frames / (time.perf_counter() - start)

    def bare_loop() -> float:
        start = time.perf_counter()
        for data in env.physics.datas:
            for cam in cams:
                bare.update_scene(data, camera=cam)
                bare.render(out=out)
        return frames / (time.perf_counter() - start)

    ours_rate, bare_rate, ratio = _rounds(ours, bare_loop, max(rounds, 5))
    bare.close()
    env.close()
    return {
        "task": task,
        "num_envs": num_envs,
        "cameras": list(cams),
        "size": size,
        "frames_per_s": round(ours_rate, 1),
        "bare_frames_per_s": round(bare_rate, 1),
        "ratio": round(ratio, 3),
    }
