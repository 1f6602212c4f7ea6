"""Batched MuJoCo simulation for robo_reward: tasks, experts, cameras, Gymnasium adapters.

``sim.make(task, num_envs, backend="cpu", device="cpu", seed=0)`` is the entry point; the env
contract is documented in :mod:`sim.env`.
"""

from __future__ import annotations

import ctypes.util
import os

# Offscreen rendering backend, chosen before mujoco is imported: EGL, or OSMesa where no libEGL exists.
if "MUJOCO_GL" not in os.environ:
    has_egl = ctypes.util.find_library("EGL") is not None
    os.environ["MUJOCO_GL"] = "egl" if has_egl or not ctypes.util.find_library("OSMesa") else "osmesa"
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
if os.environ["MUJOCO_GL"] == "osmesa":  # OSMesa's LLVM loads with mujoco: triton's goes first
    from sim.sigint import sigint_held

    try:  # (why: sim.render.preload_triton; this one must run before mujoco is imported at all)
        with sigint_held():
            import triton  # noqa: F401
    except ImportError:
        pass

from sim.env import BatchedEnv
from sim.tasks import TASKS, task_class

BACKENDS = ("cpu", "warp")  # warp: MuJoCo Warp, the robo-reward[warp] extra (sim/warp_physics.py)


def make(
    task: str,
    num_envs: int = 1,
    backend: str = "cpu",
    device: str = "cpu",
    seed: int = 0,
    reward: str = "dense",
    cameras: tuple[str, ...] | list[str] | None = None,
    render_size: tuple[int, int] = (64, 64),
    config: dict | None = None,
    num_threads: int | None = None,
) -> BatchedEnv:
    """Create ``num_envs`` auto-resetting copies of ``task`` (see :data:`TASKS`).

    ``reward`` picks the task's hand-written dense reward or the sparse success reward; ``config``
    overrides entries of the task's ``default_config()`` (e.g. ``{"reward": {"success": 10.0}}``).
    """
    cls = task_class(task)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    env = BatchedEnv(
        cls(num_envs, config),
        device=device,
        seed=seed,
        reward=reward,
        cameras=tuple(cameras) if cameras else None,
        render_size=render_size,
        num_threads=num_threads,
        backend=backend,
    )
    env.reset()
    return env


def _register_gymnasium() -> None:
    from sim.gym_adapters import register

    register()


_register_gymnasium()

__all__ = ["TASKS", "BatchedEnv", "make"]
