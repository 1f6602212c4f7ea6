"""Batched CPU physics: one MjData per env, stepped by a persistent pool of threads.

``mj_step`` releases the GIL, so plain Python threads run physics on every core. Work is handed out
in small chunks from a shared iterator (dynamic scheduling), so an env with many contacts does not
leave the other core idle. Each env keeps its own MjData — warm-starts and results do not depend on
which thread stepped it, so trajectories are identical for any thread count.
"""

from __future__ import annotations

import copy
import os
import queue
import threading

import mujoco
import numpy as np


def usable_cores() -> int:
    """The CPUs this process may run on (a SLURM task's, a taskset's), not every core of the node."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ThreadedPhysics:
    """Steps ``num_envs`` copies of ``model`` and gathers their state into batched arrays.

    After :meth:`step`: ``qpos`` (N, nq), ``qvel`` (N, nv), and, when ``kinematics`` is set,
    ``site_xpos`` (N, nsite, 3) are current and the MjData hold current body and site frames
    (``mj_kinematics``; ``mj_step`` alone leaves them one substep behind). ``models[i]`` is the model
    env ``i`` is stepped with: ``model`` itself for every env, until :meth:`own_models` gives each its copy.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        substeps: int,
        kinematics: bool = False,
        num_threads: int | None = None,
    ) -> None:
        self.model = model
        self.num_envs = num_envs
        self.substeps = substeps
        self.kinematics = kinematics
        self.models = [model] * num_envs
        self.datas = [mujoco.MjData(model) for _ in range(num_envs)]
        self.ctrl = np.zeros((num_envs, model.nu))
        self.qpos = np.zeros((num_envs, model.nq))
        self.qvel = np.zeros((num_envs, model.nv))
        self.site_xpos = np.zeros((num_envs, model.nsite, 3))
        self._applied = self.ctrl
        threads = num_threads or min(usable_cores(), num_envs)
        # Small chunks: the last one decides how long the other thread idles at the end of a step.
        chunk = 1 if threads > 1 else num_envs
        self._chunks = [(lo, min(lo + chunk, num_envs)) for lo in range(0, num_envs, chunk)]
        self._todo = iter(())
        self._jobs: list[queue.SimpleQueue] = []
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        for _ in range(threads - 1):  # the calling thread is the last worker
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            worker = threading.Thread(target=self._worker_loop, args=(jobs,), daemon=True)
            worker.start()
            self._jobs.append(jobs)
            self._workers.append(worker)

    def own_models(self) -> None:
        """Give every env its own copy of the model, so per-env parameters (domain randomisation) can differ."""
        self.models = [copy.copy(self.model) for _ in range(self.num_envs)]

    def step(self, ctrl: np.ndarray | None = None) -> None:
        """Advance every env by ``substeps`` physics steps holding ``ctrl`` (default ``self.ctrl``), then gather.

        ``ctrl`` (N, nu) lets the targets the actuators get differ from ``self.ctrl``, the commanded ones
        that a task's action mapping accumulates into (e.g. delayed by action latency).
        """
        self._applied = self.ctrl if ctrl is None else ctrl
        self._todo = iter(self._chunks)
        for jobs in self._jobs:
            jobs.put(True)
        error = self._drain()
        for _ in self._jobs:
            error = self._done.get() or error
        if error is not None:
            raise error

    def refresh(self, ids: np.ndarray) -> None:
        """Recompute derived quantities and gather state for envs whose state was set directly."""
        for i in ids:
            mujoco.mj_forward(self.models[i], self.datas[i])
            self._gather(i)

    def close(self) -> None:
        for jobs in self._jobs:
            jobs.put(False)
        for worker in self._workers:
            worker.join()
        self._jobs, self._workers = [], []

    def _worker_loop(self, jobs: queue.SimpleQueue) -> None:
        while jobs.get():
            self._done.put(self._drain())

    def _drain(self) -> BaseException | None:
        try:
            for lo, hi in self._todo:
                self._step_range(lo, hi)
        except BaseException as exc:
            return exc
        return None

    def _step_range(self, lo: int, hi: int) -> None:
        models, datas, ctrl, n = self.models, self.datas, self._applied, self.substeps
        kinematics = self.kinematics
        for i in range(lo, hi):
            data = datas[i]
            data.ctrl[:] = ctrl[i]
            mujoco.mj_step(models[i], data, n)
            if kinematics:
                mujoco.mj_kinematics(models[i], data)
            self._gather(i)

    def _gather(self, i: int) -> None:
        data = self.datas[i]
        self.qpos[i] = data.qpos
        self.qvel[i] = data.qvel
        if self.kinematics:
            self.site_xpos[i] = data.site_xpos
