"""Isaac Gym tasks behind robo_reward's batched-env contract (:mod:`sim.env`).

    from isaacgymenvs.tasks.ant import Ant            # any IsaacGymEnvs ``VecTask``
    from sim.isaac_gym import IsaacGymEnv

    env = IsaacGymEnv(Ant(cfg, rl_device, sim_device, 0, True))   # success_key=, progress_key=: see below
    obs = env.reset()
    obs, reward, terminated, truncated, info = env.step(action)   # torch, on the task's rl_device

so the reward models, PBRS shaping (:class:`robo_reward.shaping.ShapedEnv`) and PPO
(:class:`robo_reward.rl.RslRlVecEnv`) run on an Isaac Gym task as on a MuJoCo one. ``isaacgym`` is never
imported here (it is not on PyPI); the surface used is the :class:`VecTask` protocol, checked with mypy
against ``isaacgym-stubs`` (``scripts/test.sh``).

**How a VecTask steps** (IsaacGymEnvs ``tasks/base/vec_task.py``): ``step(actions)`` clamps the actions,
calls the task's ``pre_physics_step``, simulates ``control_freq_inv`` times, calls ``post_physics_step`` —
which increments ``progress_buf``, computes ``obs_buf``, ``rew_buf`` and ``reset_buf`` — then sets
``timeout_buf = (progress_buf >= max_episode_length - 1) & (reset_buf != 0)`` and
``extras["time_outs"]``, and returns ``({"obs": clamp(obs_buf)}, rew_buf, reset_buf, extras)``. Envs
flagged in ``reset_buf`` are *not* reset in that step: the task resets them (``reset_idx``) at the
start of the next one — in ``pre_physics_step`` (Ant, Humanoid, ShadowHand, FrankaCabinet, ...) or in
``post_physics_step`` before observing (Cartpole, Anymal).

**What the adapter returns.** ``terminated = reset_buf & ~time_outs``, ``truncated = time_outs``
(bool). The observation a step returns for an env that ended is its terminal observation — the reset
has not happened yet — so ``info["final_obs"]`` (the observation before the reset, what shaping and
rsl-rl's time-out bootstrap need) *is* that step's ``obs``, captured before the task's next step can
reset it. Unlike :class:`sim.BatchedEnv`, the new episode's first state is never observed: the next
action is applied to it (pre-physics reset) or lost on the terminal state (post-physics reset), as in
every IsaacGymEnvs trainer. Likewise ``reset()`` asks the task to reset every env in its next step
(``reset_buf[:] = 1``) and returns ``VecTask.reset()``'s observation: zeros for a fresh task, the last
one otherwise. ``max_episode_steps`` is ``max_episode_length - 1``, where ``VecTask.step`` declares
time-outs, and ``episode_step`` is ``progress_buf`` itself (writes go through; rsl-rl writes it).

**Success and progress** are not part of VecTask. A task that reports them per env in ``extras`` (N,)
is adapted with ``success_key=`` / ``progress_key=``; without a key ``info["success"]`` and
``info["progress"]`` are float NaN (N,) — unknown, so success rates come out NaN rather than 0 — and
:meth:`IsaacGymEnv.privileged` (the privileged potential's input) raises. Until the first step after
``reset()`` no state has been observed and ``privileged()`` reports success False and progress 0: the
first shaping term then uses Φ = 0 for the start state, as later episodes' first terms use Φ of the
terminal observation they are shown — offsets no action of the episode changes. The task's ``extras``
dict itself is ``info["extras"]``. There are no cameras: image-based reward models need a MuJoCo task
or a potential on the observation (``distilled``).

Every tensor stays on the task's ``rl_device``; nothing is copied to the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:
    from isaacgym import gymapi

ObsDict = dict[str, torch.Tensor]


class VecTask(Protocol):
    """The part of IsaacGymEnvs' ``VecTask`` (``isaacgymenvs.tasks.base.vec_task``) the adapter uses."""

    @property
    def num_envs(self) -> int: ...

    @property
    def num_obs(self) -> int: ...

    num_actions: int
    max_episode_length: int
    device: str  # where the buffers live (the sim device with the GPU pipeline, else "cpu")
    rl_device: str  # where step() returns them
    dt: float  # physics step (s); a control step is control_freq_inv of them
    control_freq_inv: int
    cfg: dict[str, Any]
    obs_buf: torch.Tensor  # float (N, num_obs)
    rew_buf: torch.Tensor  # float (N,)
    reset_buf: torch.Tensor  # long (N,): 1 = the episode ended; the task resets it in its next step
    timeout_buf: torch.Tensor  # bool/long (N,)
    progress_buf: torch.Tensor  # long (N,): steps of the current episode
    extras: dict[str, Any]

    def step(self, actions: torch.Tensor) -> tuple[ObsDict, torch.Tensor, torch.Tensor, dict[str, Any]]: ...

    def reset(self) -> ObsDict: ...


@runtime_checkable
class WithViewer(Protocol):
    """A VecTask made with ``headless=False``: its viewer window is closed by :meth:`IsaacGymEnv.close`."""

    gym: gymapi.Gym
    viewer: gymapi.Viewer | None


class IsaacGymEnv:
    """An Isaac Gym ``VecTask`` presented as a :class:`sim.BatchedEnv` (module docstring for the semantics).

    ``success_key`` / ``progress_key`` name per-env tensors (N,) in the task's ``extras``; ``instruction``
    is the task's language instruction (what a reward model is asked to score).
    """

    cameras: tuple[str, ...] = ()  # Isaac Gym camera sensors are not adapted (module docstring)

    def __init__(
        self,
        vec_task: VecTask,
        *,
        success_key: str | None = None,
        progress_key: str | None = None,
        instruction: str = "",
    ) -> None:
        self.task = vec_task
        self.num_envs = int(vec_task.num_envs)
        self.device = torch.device(vec_task.rl_device)
        self.cfg = vec_task.cfg
        self.success_key, self.progress_key = success_key, progress_key
        self.instruction = instruction
        self.dt = float(vec_task.dt) * int(vec_task.control_freq_inv)
        self.capture_final_frames = False  # set by image potentials; there are no frames to capture
        self._obs = vec_task.obs_buf.to(self.device, copy=True)  # not the buffer the task writes in place
        self._success, self._progress = self._unobserved()

    # -- properties -------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return int(self.task.num_obs)

    @property
    def act_dim(self) -> int:
        return int(self.task.num_actions)

    @property
    def max_episode_steps(self) -> int:
        """The longest episode: ``VecTask.step`` declares a time-out at ``progress_buf >= max_episode_length - 1``."""
        return int(self.task.max_episode_length) - 1

    @property
    def episode_step(self) -> torch.Tensor:
        """``progress_buf`` (long (N,), on the task's ``device``), the buffer itself: writes go through.

        For an env that just ended it holds the ended episode's length until the task resets it.
        """
        return self.task.progress_buf

    @property
    def observation(self) -> torch.Tensor:
        """The current observation (N, obs_dim): what the last ``reset``/``step`` returned."""
        return self._obs

    # -- contract ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Have the task reset every env at the start of its next step; return ``VecTask.reset()``'s observation.

        Isaac Gym tasks draw their resets from torch's global RNG: ``seed`` seeds it (as IsaacGymEnvs'
        ``set_seed`` does).
        """
        if seed is not None:
            torch.manual_seed(seed)
        self.task.reset_buf[:] = 1
        self._obs = self.task.reset()["obs"].to(self.device)
        self._success, self._progress = self._unobserved()
        return self._obs

    def step(
        self, action: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One ``VecTask.step``; returns ``obs, reward, terminated, truncated, info`` (module docstring)."""
        obs_dict, rew, reset, extras = self.task.step(self._check_action(action))
        obs = obs_dict["obs"]
        done = reset.to(self.device) != 0
        time_outs = extras.get("time_outs")
        if time_outs is None:  # VecTask.step always sets it; a task that overrides step may not
            raise KeyError("the VecTask's step returned no extras['time_outs']")
        truncated = done & (time_outs.to(self.device) != 0)
        terminated = done & ~truncated
        self._obs = obs
        self._success = self._extra(extras, self.success_key, torch.bool)
        self._progress = self._extra(extras, self.progress_key, torch.float32)
        info: dict[str, Any] = {
            "success": self._success,
            "progress": self._progress,
            "final_obs": obs,  # the terminal observation of every env that ended: the reset comes next step
            "time_outs": truncated,
            "reward_terms": {},
            "extras": extras,
        }
        return obs, rew.to(self.device, torch.float32), terminated, truncated, info

    def privileged(self) -> dict[str, torch.Tensor]:
        """``success`` and ``progress`` (N,) of the observed states (those :attr:`observation` shows)."""
        if self.progress_key is None:
            raise ValueError("this Isaac Gym task reports no progress: pass progress_key= (a key of its extras)")
        return {"success": self._success, "progress": self._progress}

    def close(self) -> None:
        """Close the task's viewer window, if it has one (the sim itself belongs to the task)."""
        task = self.task
        if isinstance(task, WithViewer) and task.viewer is not None:
            task.gym.destroy_viewer(task.viewer)
            task.viewer = None

    def __enter__(self) -> IsaacGymEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _nan(self) -> torch.Tensor:
        return torch.full((self.num_envs,), float("nan"), device=self.device)

    def _unobserved(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``success``, ``progress`` before a step has observed the episodes' states: False and 0 (NaN without keys)."""
        n, device = self.num_envs, self.device
        success = self._nan() if self.success_key is None else torch.zeros(n, dtype=torch.bool, device=device)
        progress = self._nan() if self.progress_key is None else torch.zeros(n, device=device)
        return success, progress

    def _extra(self, extras: dict[str, Any], key: str | None, dtype: torch.dtype) -> torch.Tensor:
        """``extras[key]`` as (N,) ``dtype`` on ``device``; NaN (N,) float when ``key`` is None."""
        if key is None:
            return self._nan()
        value = extras.get(key)
        if not isinstance(value, torch.Tensor) or value.shape != (self.num_envs,):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"extras[{key!r}] must be a tensor of shape ({self.num_envs},), got {got}")
        return value.to(self.device, dtype)

    def _check_action(self, action: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``action`` as float32 (N, act_dim) on ``device``, clipped to [-1, 1]; bad input raises."""
        act = torch.as_tensor(action, device=self.device)
        expected = (self.num_envs, self.act_dim)
        if not act.is_floating_point():
            raise ValueError(f"action must be a float array of shape {expected}, got dtype {act.dtype}")
        if tuple(act.shape) != expected:
            raise ValueError(f"action must have shape {expected} (num_envs, act_dim), got {tuple(act.shape)}")
        if not bool(torch.isfinite(act).all()):
            bad = torch.unique(torch.nonzero(~torch.isfinite(act))[:, 0]).tolist()
            raise ValueError(f"action of shape {expected} has NaN or inf entries in envs {bad[:8]}")
        return act.to(torch.float32).clamp(-1.0, 1.0)
