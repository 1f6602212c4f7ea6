"""The batched env: the contract every trainer, recorder and benchmark in robo_reward relies on.

    env = sim.make("push_cube", num_envs=64, backend="cpu", device="cpu", seed=0)
    obs = env.reset()                                    # (N, obs_dim) float32
    obs, reward, terminated, truncated, info = env.step(action)   # action (N, act_dim) in [-1, 1]
    frames = env.render()                                # uint8 (N, V, H, W, 3)

``info`` (all tensors, (N,) unless noted) describes the state the step reached *before* auto-reset:
``success`` bool, ``progress`` float in [0, 1] (privileged), ``stage`` int64 (see ``stage_names``),
``final_obs`` (N, obs_dim) — equal to ``obs`` except for envs that were just reset —, ``time_outs``
(= truncated, for rsl-rl) and ``reward_terms``: a dict of the raw dense terms. ``terminated`` marks
true terminal states (success, a fallen robot); ``truncated`` marks the time limit only, where value
bootstrapping and the shaping term γΦ(s') must be kept.

With ``env.capture_final_frames = True`` (off by default, and free when off) ``step`` also renders the
envs that ended before resetting them: ``info["final_frames"]`` uint8 (len(done), V, H, W, 3) from
``env.cameras`` and ``info["final_ids"]`` int64 (len(done),), their env indices — what an image-based
potential needs for Φ(s') of a truncated episode, whose last state is gone after the auto-reset.

With ``task.randomize.enabled`` (see :mod:`sim.randomize`; off by default) every reset also draws the
env's colours, lights, cameras, distractors, masses, friction, actuator gains and action latency from the
env's seeded RNG; :meth:`BatchedEnv.randomization` returns what each env's current episode drew.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from sim.physics import ThreadedPhysics
from sim.randomize import DelayLine, Randomizer
from sim.render import BatchRenderer
from sim.tasks.base import Task

REWARD_MODES = ("dense", "sparse")


class BatchedEnv:
    """N auto-resetting copies of one task, stepped together; returns torch tensors on ``device``.

    ``episode_step`` (numpy int64 (N,), updated in place) counts the steps of each env's current
    episode; the time limit truncates when it reaches ``max_episode_steps``. Physics uses
    ``num_threads`` threads (default: one per core) — leave a core for a learner that shares the machine.
    ``capture_final_frames`` (bool, default False) adds the pre-reset frames to ``step``'s info (module doc).
    """

    def __init__(
        self,
        task: Task,
        device: str | torch.device = "cpu",
        seed: int = 0,
        reward: str = "dense",
        cameras: tuple[str, ...] | None = None,
        render_size: tuple[int, int] = (64, 64),
        num_threads: int | None = None,
        backend: str = "cpu",
    ) -> None:
        if reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
        self.task = task
        self.num_envs = task.num_envs
        self.device = torch.device(device)
        self.reward_mode = reward
        self.cameras = tuple(cameras) if cameras else task.cameras
        self.render_size = render_size
        self.model = task.build_model()
        physics_args = (self.model, self.num_envs, task.substeps)
        if backend == "warp":  # MuJoCo Warp worlds on the warp device matching ``device`` (sim/warp_physics.py)
            from sim.warp_physics import WarpPhysics

            self.physics = WarpPhysics(*physics_args, kinematics=task.needs_kinematics, device=self.device)
        else:
            self.physics = ThreadedPhysics(*physics_args, kinematics=task.needs_kinematics, num_threads=num_threads)
        task.bind(self.physics)
        self.randomizer: Randomizer | None = None
        self._delay: DelayLine | None = None
        self._drawn: list[dict] = [{} for _ in range(self.num_envs)]
        randomize = task.config.get("randomize", {})
        if randomize.get("enabled", False):
            self.physics.own_models()
            self.randomizer = Randomizer(self.model, task.randomize_parts, randomize)
            self._delay = DelayLine(self.num_envs, self.model.nu, self.randomizer.max_latency)
        self.dt = self.model.opt.timestep * task.substeps
        self.episode_step = np.zeros(self.num_envs, dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self._renderer: BatchRenderer | None = None
        self.capture_final_frames = False
        self._obs = np.zeros((self.num_envs, task.obs_dim), dtype=np.float32)
        self._on_cpu = self.device.type == "cpu"
        # dense reward = weights · raw terms, with the weights from the task config (overridable)
        self._term_names = tuple(task.config["reward"])
        self._term_weights = np.array([float(task.config["reward"][name]) for name in self._term_names])

    # -- properties -------------------------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return self.task.obs_dim

    @property
    def act_dim(self) -> int:
        return self.task.act_dim

    @property
    def max_episode_steps(self) -> int:
        return self.task.max_episode_steps

    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def observation(self) -> torch.Tensor:
        """The current observation (N, obs_dim): what the last ``reset``/``step`` returned."""
        return self._to_tensor(self._obs)

    # -- contract ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every env (re-seeding when ``seed`` is given) and return the observation."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_envs(np.arange(self.num_envs))
        self._obs = self.task.observe()
        return self._to_tensor(self._obs)

    def step(self, action: torch.Tensor | np.ndarray):
        act = self._check_action(action)
        task = self.task
        task.before_step()
        task.apply_action(act)
        self.physics.step(None if self._delay is None else self._delay.push(self.physics.ctrl))
        self.episode_step += 1
        task.update()

        terms = task.reward_terms(act)
        stacked = np.empty((len(self._term_names), self.num_envs))  # (terms, N); rows filled, not np.stack'd
        for row, name in zip(stacked, self._term_names, strict=True):
            row[:] = terms[name]
        outcome = task.evaluate()
        # einsum, not @: a BLAS call here would wake OpenBLAS threads that spin against the physics threads
        dense = self.reward_mode == "dense"
        reward = np.einsum("t,tn->n", self._term_weights, stacked) if dense else outcome.success.astype(np.float32)
        terminated = outcome.terminated
        truncated = (self.episode_step >= task.max_episode_steps) & ~terminated
        obs = task.observe()
        final_obs = obs
        done = np.flatnonzero(terminated | truncated)
        captured = self._capture(done) if self.capture_final_frames else {}
        if len(done):
            final_obs = obs.copy()
            self._reset_envs(done)
            obs[done] = task.observe()[done]
        self._obs = obs

        tensor = self._to_tensor
        obs_t, truncated_t = tensor(obs), tensor(truncated)
        info = {
            "success": tensor(outcome.success),
            "progress": tensor(outcome.progress),
            "stage": tensor(outcome.stage),
            "final_obs": obs_t if final_obs is obs else tensor(final_obs),
            "time_outs": truncated_t,
            "reward_terms": dict(zip(self._term_names, tensor(stacked).unbind(), strict=True)),
            **captured,
        }
        return obs_t, tensor(reward), tensor(terminated), truncated_t, info

    def privileged(self) -> dict[str, torch.Tensor]:
        """``success``, ``progress`` and ``stage`` (N,) of the *current* states (what ``render`` shows).

        ``step``'s info describes the state a step reached before auto-reset; this describes the state
        after any reset — what a recorder needs to label the frame it renders before acting.
        """
        self.task.update()
        outcome = self.task.evaluate()
        return {key: self._to_tensor(getattr(outcome, key)) for key in ("success", "progress", "stage")}

    def randomization(self, ids=None) -> list[dict]:
        """The domain-randomisation parameters of each env's current episode (plain JSON data, see
        :meth:`sim.randomize.Randomizer.draw`), for every env or the envs ``ids``; ``{}`` each when it is off."""
        ids = range(self.num_envs) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        return [copy.deepcopy(self._drawn[i]) for i in ids]

    def reset_envs(self, ids) -> torch.Tensor:
        """Start new episodes in the envs ``ids`` only (e.g. to cut a recording short); returns the observation."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            self._reset_envs(ids)
            self._obs = self._obs.copy()  # tensors handed out earlier share memory with the old array
            self._obs[ids] = self.task.observe()[ids]
        return self._to_tensor(self._obs)

    def render(self, ids=None) -> torch.Tensor:
        """Images from every camera in ``self.cameras``: uint8 (N, V, H, W, 3), or (len(ids), ...) for a subset."""
        if self._renderer is None:
            height, width = self.render_size
            self._renderer = BatchRenderer(self.model, self.num_envs, self.cameras, height, width)
        phys = self.physics
        ids = range(self.num_envs) if ids is None else np.asarray(ids).reshape(-1)
        return torch.from_numpy(self._renderer.render([phys.datas[i] for i in ids], [phys.models[i] for i in ids]))

    def expert(self, obs: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Scripted expert actions (N, act_dim) for the envs' current state (``obs`` from the last step)."""
        obs_np = self._obs if obs is None else np.asarray(torch.as_tensor(obs).cpu(), dtype=np.float32)
        if obs_np.shape != (self.num_envs, self.obs_dim):
            raise ValueError(f"obs must have shape ({self.num_envs}, {self.obs_dim}), got {tuple(obs_np.shape)}")
        return self._to_tensor(self.task.expert(obs_np).astype(np.float32))

    def close(self) -> None:
        self.physics.close()
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> BatchedEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _capture(self, done: np.ndarray) -> dict[str, torch.Tensor]:
        """``final_frames`` (len(done), V, H, W, 3) and ``final_ids`` (len(done),) of the envs about to reset."""
        if len(done):
            frames = self.render(done)
        else:
            frames = torch.empty((0, len(self.cameras), *self.render_size, 3), dtype=torch.uint8)
        ids = torch.from_numpy(done.astype(np.int64))
        return {"final_frames": frames.to(self.device), "final_ids": ids.to(self.device)}

    def _reset_envs(self, ids: np.ndarray) -> None:
        for i in ids:
            self.physics.datas[i].time = 0.0
        self.task.reset(ids, self._rng)
        if self.randomizer is not None:
            for i in ids:
                self._drawn[i] = self.randomizer.draw(self._rng)
                self.randomizer.apply(self.physics.models[i], self._drawn[i])
            latency = np.array([self._drawn[i]["physics"]["latency"] for i in ids], dtype=np.int64)
            self._delay.reset(ids, self.physics.ctrl[ids], latency)
        self.physics.refresh(ids)
        self.task.after_reset(ids)
        self.task.update()  # observe() reads what update() computed, now for the new episodes' states
        self.episode_step[ids] = 0

    def _check_action(self, action: torch.Tensor | np.ndarray) -> np.ndarray:
        """The action as a fresh float64 array clipped to [-1, 1]; a clear error for a wrong dtype, shape or NaN."""
        expected = (self.num_envs, self.act_dim)
        if isinstance(action, torch.Tensor):
            act = action.detach().cpu().numpy() if action.is_floating_point() else None
        else:
            arr = np.asarray(action)
            act = arr if np.issubdtype(arr.dtype, np.floating) else None
        if act is None:
            raise ValueError(f"action must be a float array of shape {expected}, got dtype {action.dtype}")
        if act.shape != expected:
            raise ValueError(f"action must have shape {expected} (num_envs, act_dim), got {tuple(act.shape)}")
        # one reduction on the common path; a sum of finite entries can still overflow, hence the second test
        if not np.isfinite(act.sum()) and not np.isfinite(act).all():
            bad = np.unique(np.argwhere(~np.isfinite(act))[:, 0]).tolist()
            raise ValueError(f"action of shape {expected} has NaN or inf entries in envs {bad[:8]}")
        out = np.minimum(act, 1.0, out=np.empty(expected))  # clip by two ufuncs: np.clip costs 3x per call
        return np.maximum(out, -1.0, out=out)

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        """float arrays → float32, bool and int arrays keep their type; shares memory on the CPU."""
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        out = torch.from_numpy(array)
        return out if self._on_cpu else out.to(self.device)
