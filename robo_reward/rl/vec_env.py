"""rsl-rl-lib's ``VecEnv`` over :class:`sim.BatchedEnv`.

rsl-rl (5.x) reads observations as a ``TensorDict`` of named groups; the runner's ``obs_groups`` maps
its observation sets (``"actor"``, ``"critic"``) to those groups. The batched env has one flat
observation, exposed here as the group ``"policy"`` — the group rsl-rl falls back to for any set
missing from ``obs_groups`` (``conf/algo/ppo.yaml`` names it explicitly).

Besides the contract, the adapter keeps an :class:`EpisodeLog` of every finished episode (return,
length, success, the step it ended on and the sum of every raw reward term, so shaping, potential
and task reward stay separable) so a trainer can report learning curves per iteration without
reading TensorBoard back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from sim import BatchedEnv

OBS_GROUP = "policy"


@dataclass
class EpisodeLog:
    """Finished episodes in the order they ended; all lists have one entry per episode."""

    end_step: list[int] = field(default_factory=list)  # adapter step count (1-based) of the episode's last step
    returns: list[float] = field(default_factory=list)  # undiscounted sum of the rewards given to the learner
    lengths: list[int] = field(default_factory=list)  # steps
    success: list[bool] = field(default_factory=list)  # the task's success flag at the last step
    # per raw reward term (the env's ``info["reward_terms"]``, shaping terms included): its sum over each episode
    term_sums: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.end_step)


class RslRlVecEnv(VecEnv):
    """Present a :class:`sim.BatchedEnv` (N envs, auto-resetting) to rsl-rl's ``OnPolicyRunner``.

    Attributes follow ``rsl_rl.env.VecEnv``: ``num_envs`` (N), ``num_actions`` (the env's act_dim),
    ``max_episode_length`` (int, the task's time limit in steps), ``device``, ``cfg`` (the task's
    merged config dict, or the env's own ``cfg``: an Isaac Gym task's) and ``episode_length_buf``: int64
    (N,), read from the env's ``episode_step`` (a numpy array, or a tensor for :class:`sim.isaac_gym.IsaacGymEnv`)
    on every access — assigning to it (rsl-rl does, for ``init_at_random_ep_len``) writes through,
    so the env's time limit follows.

    :attr:`num_steps` counts :meth:`step` calls since construction.
    """

    def __init__(self, env: BatchedEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.num_actions = env.act_dim
        self.max_episode_length = env.max_episode_steps
        self.device = env.device
        cfg = getattr(env, "cfg", None)
        self.cfg = env.task.config if cfg is None else cfg
        self.num_steps = 0
        self.episodes = EpisodeLog()
        self._episode_return = torch.zeros(self.num_envs, device=self.device)
        self._episode_length = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._term_sums: dict[str, torch.Tensor] = {}
        self._obs = self._group(env.observation)

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """Steps taken in each env's current episode: int64 (N,), on ``device``."""
        steps = self.env.episode_step
        return steps if isinstance(steps, torch.Tensor) else torch.from_numpy(steps).to(self.device)

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        steps = self.env.episode_step
        if isinstance(steps, torch.Tensor):
            steps[:] = value.detach().to(steps.device, steps.dtype)
        else:
            steps[:] = value.detach().cpu().numpy()

    def get_observations(self) -> TensorDict:
        """The current observation: ``{"policy": float32 (N, obs_dim)}``, batch size (N,)."""
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """Step every env with ``actions`` float (N, num_actions) in [-1, 1] (the env clips).

        Returns ``(obs, rewards, dones, extras)``: ``obs`` as in :meth:`get_observations` (already reset
        where an episode ended), ``rewards`` float32 (N,), ``dones`` int64 (N,) — 1 where the episode
        ended by termination or time limit — and ``extras`` with ``"time_outs"`` bool (N,) (time limit
        only, so rsl-rl bootstraps the value there) and ``"log"``: ``"/reward/<term>"`` the batch mean
        of each raw (unweighted) reward term, and, present only when some episode ended this step,
        ``"/success"`` the success rate of those episodes and ``"/episode/<term>"`` the mean of each
        term's sum over them.
        """
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        done = terminated | truncated
        self.num_steps += 1
        self._episode_return += rewards
        self._episode_length += 1
        terms = info["reward_terms"]
        log = {f"/reward/{name}": value.mean() for name, value in terms.items()}
        for name, value in terms.items():
            total = self._term_sums.get(name)
            self._term_sums[name] = value.float().clone() if total is None else total.add_(value)
        if done.any():
            success = info["success"][done]
            log["/success"] = success.float().mean()
            ids = done.nonzero().squeeze(1)
            for name, total in self._term_sums.items():
                log[f"/episode/{name}"] = total[ids].mean()
            self._record_episodes(ids, success)
        self._obs = self._group(obs)
        extras = {"time_outs": truncated, "log": log}
        return self._obs, rewards, done.long(), extras

    def close(self) -> None:
        self.env.close()

    def _record_episodes(self, ids: torch.Tensor, success: torch.Tensor) -> None:
        """Append the episodes that ended this step (env indices ``ids`` int64) to :attr:`episodes`."""
        log = self.episodes
        log.end_step.extend([self.num_steps] * len(ids))
        log.returns.extend(self._episode_return[ids].tolist())
        log.lengths.extend(self._episode_length[ids].tolist())
        log.success.extend(success.tolist())
        for name, total in self._term_sums.items():
            # a term first seen after some episodes ended has no sum for them: pad so lists stay aligned
            sums = log.term_sums.setdefault(name, [0.0] * (len(log.end_step) - len(ids)))
            sums.extend(total[ids].tolist())
            total[ids] = 0.0
        self._episode_return[ids] = 0.0
        self._episode_length[ids] = 0

    def _group(self, obs: torch.Tensor) -> TensorDict:
        return TensorDict({OBS_GROUP: obs}, batch_size=[self.num_envs], device=self.device)
