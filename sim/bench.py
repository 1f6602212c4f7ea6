"""Benchmarks of the batched env, each against a baseline measured in the same run.

Both sides are measured in alternating rounds and a ratio is the median of the per-round ratios
(:mod:`sim.timing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium
import mujoco
import numpy as np
import torch
from mujoco import rollout

import sim
from sim.render import disable_costly_effects
from sim.timing import alternate, median_ratio, medians


def _random_actions(env: sim.BatchedEnv, steps: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(steps, env.num_envs, env.act_dim, generator=gen) * 2 - 1


def record_physics(env: sim.BatchedEnv, actions: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step ``env`` through ``actions`` and keep what its physics started from at every step.

    Returns ``states`` (steps, N, nstate) — each env's full physics state (``mjSTATE_FULLPHYSICS``) after
    any auto-reset, ``warmstarts`` (steps, N, nv) — its solver warm start, and ``controls`` (steps, N, nu)
    — the actuator targets the physics applied: the same work, state for state, that a bound must redo.
    """
    physics, model = env.physics, env.model
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    steps, n = len(actions), env.num_envs
    states = np.zeros((steps, n, mujoco.mj_stateSize(model, spec)))
    warmstarts = np.zeros((steps, n, model.nv))
    controls = np.zeros((steps, n, model.nu))
    stepped = physics.step
    count = 0

    def recording_step(ctrl: np.ndarray | None = None) -> None:
        nonlocal count
        for i, data in enumerate(physics.datas):
            mujoco.mj_getState(model, data, states[count, i], spec)
            warmstarts[count, i] = data.qacc_warmstart
        controls[count] = physics.ctrl if ctrl is None else ctrl
        count += 1
        stepped(ctrl)

    physics.step = recording_step  # type: ignore[method-assign]
    try:
        for act in actions:
            env.step(act)
    finally:
        del physics.step  # back to the class's method
    return states, warmstarts, controls


class RolloutBound:
    """Raw physics with no env around it: ``mujoco.rollout`` on a persistent 2-thread pool, redoing the env's steps.

    ``closed_loop`` makes one call per env step, as any env must (its controls come from observations
    of the previous step), each from the state and warm start the env's physics started from at that
    step (:func:`record_physics`: after auto-resets too, so episode starts and ends cost what they cost
    the env) with the controls it applied, for ``substeps`` physics steps: the bound an env can reach.
    ``open_loop`` runs every step in one call from the first state (no per-step synchronisation at all).
    """

    def __init__(self, env: sim.BatchedEnv, recorded: tuple[np.ndarray, np.ndarray, np.ndarray], nthread: int = 2):
        self.model, self.n, self.substeps = env.model, env.num_envs, env.task.substeps
        self.states, self.warmstarts, controls = recorded
        self.steps, nstate = len(self.states), self.states.shape[2]
        # (steps, N, substeps, nu): each step's controls held for its substeps, laid out per call
        self.controls = np.ascontiguousarray(np.repeat(controls[:, :, None], self.substeps, axis=2))
        self.pool = rollout.Rollout(nthread=nthread)
        self.datas = [mujoco.MjData(self.model) for _ in range(nthread)]
        self.models = [self.model] * self.n
        self._out = np.zeros((self.n, self.substeps, nstate))
        self._sensors = np.zeros((self.n, self.substeps, self.model.nsensordata))
        self.open_loop()  # warm up the pool

    def closed_loop(self) -> float:
        ctrl_spec = mujoco.mjtState.mjSTATE_CTRL.value
        start = time.perf_counter()
        for step in range(self.steps):
            self.pool.rollout(
                self.models, self.datas, self.states[step], self.controls[step], control_spec=ctrl_spec,
                skip_checks=True, nstep=self.substeps, initial_warmstart=self.warmstarts[step], state=self._out,
                sensordata=self._sensors,
            )  # fmt: skip
        return self.n * self.steps / (time.perf_counter() - start)

    def open_loop(self) -> float:
        control = self.controls.transpose(1, 0, 2, 3).reshape(self.n, self.steps * self.substeps, -1)
        start = time.perf_counter()
        self.pool.rollout(self.model, self.datas, self.states[0], control)
        return self.n * self.steps / (time.perf_counter() - start)

    def close(self) -> None:
        self.pool.close()


def bench_sim(task: str, num_envs: int = 64, steps: int = 200, rounds: int = 3, seed: int = 0) -> dict:
    """Our env-steps/s with random actions vs the raw ``mujoco.rollout`` bound and a gymnasium peer.

    ``bound_steps_per_s`` is :meth:`RolloutBound.closed_loop`: the physics of a pass of the env over the same
    actions redone by ``mujoco.rollout`` (same states, warm starts, controls and substeps per call);
    ``open_loop_steps_per_s`` is reported beside it for reference, and ``threaded_physics_steps_per_s``
    is our threaded engine alone on the same controls (the choice of engine rests on it vs the bound).
    """
    env = sim.make(task, num_envs=num_envs, seed=seed)
    actions = _random_actions(env, steps, seed)
    for act in actions[:5]:  # warm up threads and caches
        env.step(act)
    bound = RolloutBound(env, record_physics(env, actions))

    def ours() -> float:
        start = time.perf_counter()
        for act in actions:
            env.step(act)
        return num_envs * steps / (time.perf_counter() - start)

    def physics_only() -> float:
        """Our threaded engine on the same controls, without the task's observation/reward work."""
        physics, per_step = env.physics, bound.controls[:, :, 0]
        start = time.perf_counter()
        for step in range(steps):
            physics.ctrl[:] = per_step[step]
            physics.step()
        return num_envs * steps / (time.perf_counter() - start)

    peer = GymnasiumPeer(task, num_envs, max(20, steps // 4), seed)
    rates = alternate({"ours": ours, "bound": bound.closed_loop, "peer": peer.measure, "open": bound.open_loop,
                       "physics": physics_only}, rounds)  # fmt: skip
    bound.close()
    peer.close()
    env.close()
    med = medians(rates)
    return {
        "task": task,
        "num_envs": num_envs,
        "env_steps_per_s": round(med["ours"], 1),
        "bound_steps_per_s": round(med["bound"], 1),
        "ratio_vs_bound": round(median_ratio(rates["ours"], rates["bound"]), 3),
        "peer_steps_per_s": round(med["peer"], 1),
        "ratio_vs_peer": round(median_ratio(rates["ours"], rates["peer"]), 3),
        "open_loop_steps_per_s": round(med["open"], 1),
        "threaded_physics_steps_per_s": round(med["physics"], 1),
    }


def bench_sim_backend(
    task: str, backend: str = "warp", num_envs: int = 64, steps: int = 200, rounds: int = 3, seed: int = 0
) -> dict:
    """env-steps/s of ``backend`` vs the CPU backend: same task, seed and random actions, alternating rounds.

    ``first_step_s`` is the backend's first step (on warp: kernel compile or cache load, plus the step);
    ``physics_steps_per_s`` is each backend's physics alone on the env's last controls, without the task.
    """
    start = time.perf_counter()
    env = sim.make(task, num_envs=num_envs, backend=backend, seed=seed)
    cpu = sim.make(task, num_envs=num_envs, seed=seed)
    actions = _random_actions(cpu, steps, seed)
    env.step(actions[0])
    first_step = time.perf_counter() - start
    for act in actions[:3]:  # warm up threads and caches
        cpu.step(act)
        env.step(act)

    def env_rate(target: sim.BatchedEnv) -> Callable[[], float]:
        def measure() -> float:
            begin = time.perf_counter()
            for act in actions:
                target.step(act)
            return num_envs * steps / (time.perf_counter() - begin)

        return measure

    def physics_rate(target: sim.BatchedEnv) -> Callable[[], float]:
        def measure() -> float:
            begin = time.perf_counter()
            for _ in range(steps):
                target.physics.step()
            return num_envs * steps / (time.perf_counter() - begin)

        return measure

    measures = {"env": env_rate(env), "cpu": env_rate(cpu), "env_physics": physics_rate(env),
                "cpu_physics": physics_rate(cpu)}  # fmt: skip
    rates = alternate(measures, rounds)
    env.close()
    cpu.close()
    med = medians(rates)
    return {
        "task": task,
        "backend": backend,
        "num_envs": num_envs,
        "first_step_s": round(first_step, 2),
        "env_steps_per_s": round(med["env"], 1),
        "cpu_env_steps_per_s": round(med["cpu"], 1),
        "ratio_vs_cpu": round(median_ratio(rates["env"], rates["cpu"]), 3),
        "physics_steps_per_s": round(med["env_physics"], 1),
        "cpu_physics_steps_per_s": round(med["cpu_physics"], 1),
    }


class GymnasiumPeer:
    """A gymnasium ``SyncVectorEnv`` of ``num_envs`` single envs, the way most code batches MuJoCo.

    A task naming ``gymnasium_peer`` (ant: Ant-v5, humanoid: Humanoid-v5, same MJCF and frame skip) is
    compared with that env; the other tasks with our own gymnasium single env, one per copy.
    """

    def __init__(self, task: str, num_envs: int, steps: int, seed: int = 0) -> None:
        cls = sim.TASKS[task]
        env_id = cls.gymnasium_peer or cls.gym_id
        self.vec = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(env_id) for _ in range(num_envs)])
        self.vec.reset(seed=seed)
        self.vec.action_space.seed(seed)
        self.actions = [self.vec.action_space.sample() for _ in range(steps)]
        self.rate_scale = num_envs * steps
        for act in self.actions[:3]:
            self.vec.step(act)

    def measure(self) -> float:
        start = time.perf_counter()
        for act in self.actions:
            self.vec.step(act)
        return self.rate_scale / (time.perf_counter() - start)

    def close(self) -> None:
        self.vec.close()


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

    rates = alternate({"ours": ours, "bare": bare_loop}, rounds)
    bare.close()
    env.close()
    return {
        "task": task,
        "num_envs": num_envs,
        "cameras": list(cams),
        "size": size,
        "frames_per_s": round(medians(rates)["ours"], 1),
        "bare_frames_per_s": round(medians(rates)["bare"], 1),
        "ratio": round(median_ratio(rates["ours"], rates["bare"]), 3),
    }
