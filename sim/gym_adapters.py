"""Gymnasium views of the batched env: a single ``gymnasium.Env`` and a ``gymnasium.vector.VectorEnv``.

Both run on the same batched core (numpy in, numpy out). The vector env resets in the same step, as
gymnasium's ``AutoresetMode.SAME_STEP`` defines: ``info["final_obs"]`` with its mask ``info["_final_obs"]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from sim.tasks import TASKS


def _spaces(env) -> tuple[spaces.Box, spaces.Box]:
    obs = spaces.Box(-np.inf, np.inf, shape=(env.obs_dim,), dtype=np.float32)
    act = spaces.Box(-1.0, 1.0, shape=(env.act_dim,), dtype=np.float32)
    return obs, act


def _numpy_info(info: dict[str, Any]) -> dict[str, Any]:
    out = {key: value.cpu().numpy() for key, value in info.items() if key != "reward_terms"}
    out["reward_terms"] = {key: value.cpu().numpy() for key, value in info["reward_terms"].items()}
    return out


class SingleEnv(gymnasium.Env):
    """One env of a task. At the end of an episode ``step`` returns the terminal observation."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str, render_mode: str | None = None, **make_kwargs: Any) -> None:
        import sim

        self.env = sim.make(task, num_envs=1, **make_kwargs)
        self.observation_space, self.action_space = _spaces(self.env)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.env.dt)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(2**31))
        self._seeded = True
        obs = self.env.reset(seed=seed)
        return obs[0].numpy(), {}

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32)[None])
        info = {key: value[0] for key, value in _numpy_info(info).items() if key != "reward_terms"}
        final_obs = info.pop("final_obs")
        return final_obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> np.ndarray:
        return self.env.render()[0, 0].numpy()

    def close(self) -> None:
        self.env.close()


class BatchedVectorEnv(VectorEnv):
    """``num_envs`` envs of a task as a gymnasium VectorEnv (same-step autoreset)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task: str, num_envs: int, **make_kwargs: Any) -> None:
        import sim

        self.env = sim.make(task, num_envs=num_envs, **make_kwargs)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.env)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self.render_mode = "rgb_array"

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.env.reset(seed=seed).numpy(), {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, dtype=np.float32))
        info = _numpy_info(info)
        info["_final_obs"] = terminated.numpy() | truncated.numpy()
        return obs.numpy(), reward.numpy(), terminated.numpy(), truncated.numpy(), info

    def render(self) -> np.ndarray:
        return self.env.render().numpy()

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


def register() -> None:
    """Register ``robo_reward/<Task>-v0`` for every task (single env and ``gymnasium.make_vec``)."""
    for name, cls in TASKS.items():
        if cls.gym_id not in gymnasium.registry:
            gymnasium.register(
                id=cls.gym_id,
                entry_point=SingleEnv,
                vector_entry_point=BatchedVectorEnv,
                kwargs={"task": name},
            )
