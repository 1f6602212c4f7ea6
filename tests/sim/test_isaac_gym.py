"""sim.isaac_gym.IsaacGymEnv on IsaacGymEnvs' VecTask buffer logic, with our own reach env as the simulator.

Isaac Gym itself is not installable here; :class:`ReachVecTask` is its ``VecTask.step`` (tasks/base/vec_task.py)
line for line, around a task written like IsaacGymEnvs' Ant (reset in the next step's ``pre_physics_step``;
``post_physics_step`` increments ``progress_buf`` and fills ``obs_buf``, ``rew_buf``, ``reset_buf``), so the
adapter's trajectory can be compared with the batched env's for the same seed and actions.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from rsl_rl.runners import OnPolicyRunner

import sim
from robo_reward.rl import RslRlVecEnv
from robo_reward.shaping import DistilledPotential, PrivilegedPotential, ShapedEnv, ShapingError, shaped_reward
from sim.isaac_gym import IsaacGymEnv

PPO_CONF = Path(__file__).resolve().parents[2] / "conf" / "algo" / "ppo.yaml"
EPISODE = {"max_episode_steps": 25}  # reach: terminates on success, else truncated after 25 steps


class ReachVecTask:
    """An IsaacGymEnvs ``VecTask`` whose physics is ``sim.make("reach")`` (module docstring).

    The batched env auto-resets inside its own step, so an env it just ended already holds a new start
    state ("fresh"); the task's lazy ``reset_idx`` then only books it (``progress_buf``, ``reset_buf``),
    and really resets only envs that were not fresh (``reset_buf`` set from outside). ``real_resets``
    counts those. The batched env's time limit follows ``progress_buf`` (rsl-rl may write it).
    """

    def __init__(self, num_envs: int, seed: int, config: dict | None = None) -> None:
        self.sim_env = sim.make("reach", num_envs=num_envs, seed=seed, config=config, num_threads=1)
        env = self.sim_env
        # Env.__init__ / VecTask.__init__
        self.num_environments, self.num_observations, self.num_actions = num_envs, env.obs_dim, env.act_dim
        self.device = self.rl_device = "cpu"
        self.clip_obs, self.clip_actions = math.inf, 1.0
        self.dt, self.control_freq_inv = float(env.model.opt.timestep), env.task.substeps
        # the task's __init__ (Ant: self.max_episode_length = self.cfg["env"]["episodeLength"])
        self.max_episode_length = env.max_episode_steps + 1  # VecTask: time-out at progress_buf >= this - 1
        self.cfg = {"env": {"numEnvs": num_envs, "episodeLength": self.max_episode_length}}
        self.control_steps = 0
        self.allocate_buffers()
        self.obs_dict: dict[str, torch.Tensor] = {}
        self.real_resets = 0
        self._fresh = torch.ones(num_envs, dtype=torch.bool)  # sim.make has just reset every env
        self._result: tuple | None = None

    @property
    def num_envs(self) -> int:
        return self.num_environments

    @property
    def num_obs(self) -> int:
        return self.num_observations

    def allocate_buffers(self) -> None:  # VecTask.allocate_buffers
        n = self.num_envs
        self.obs_buf = torch.zeros((n, self.num_obs), device=self.device, dtype=torch.float)
        self.rew_buf = torch.zeros(n, device=self.device, dtype=torch.float)
        self.reset_buf = torch.ones(n, device=self.device, dtype=torch.long)
        self.timeout_buf = torch.zeros(n, device=self.device, dtype=torch.long)
        self.progress_buf = torch.zeros(n, device=self.device, dtype=torch.long)
        self.extras: dict = {}

    def step(self, actions: torch.Tensor):  # VecTask.step, without domain randomisation
        action_tensor = torch.clamp(actions, -self.clip_actions, self.clip_actions)
        self.pre_physics_step(action_tensor)
        self._result = self.sim_env.step(self.actions)  # for i in range(control_freq_inv): gym.simulate(sim)
        self.post_physics_step()
        self.control_steps += 1
        self.timeout_buf = (self.progress_buf >= self.max_episode_length - 1) & (self.reset_buf != 0)
        self.extras["time_outs"] = self.timeout_buf.to(self.rl_device)
        self.obs_dict["obs"] = torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)
        return self.obs_dict, self.rew_buf.to(self.rl_device), self.reset_buf.to(self.rl_device), self.extras

    def reset(self) -> dict[str, torch.Tensor]:  # VecTask.reset: no reset, the current obs_buf
        self.obs_dict["obs"] = torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)
        return self.obs_dict

    # -- the task (Ant's ordering) -------------------------------------------------------------
    def pre_physics_step(self, actions: torch.Tensor) -> None:
        env_ids = self.reset_buf.nonzero(as_tuple=False).flatten()
        if len(env_ids) > 0:
            self.reset_idx(env_ids)
        self.actions = actions.clone()
        self.sim_env.episode_step[:] = self.progress_buf.numpy()  # the time limit counts progress_buf, as here

    def reset_idx(self, env_ids: torch.Tensor) -> None:
        stale = env_ids[~self._fresh[env_ids]]
        if len(stale):
            self.sim_env.reset_envs(stale.numpy())
            self.real_resets += len(stale)
        self._fresh[env_ids] = True
        self.progress_buf[env_ids] = 0
        self.reset_buf[env_ids] = 0

    def post_physics_step(self) -> None:
        self.progress_buf += 1
        _, reward, terminated, truncated, info = self._result
        self.obs_buf[:] = info["final_obs"]  # compute_observations: the state the step reached
        self.rew_buf[:] = reward
        reset = torch.where(self.progress_buf >= self.max_episode_length - 1, 1, terminated.long())
        assert torch.equal(reset.bool(), terminated | truncated), "stand-in out of step with the batched env"
        self.reset_buf[:] = reset
        self.extras["success"], self.extras["progress"] = info["success"], info["progress"]
        self._fresh = terminated | truncated  # the batched env has already started new episodes there


def adapted(num_envs: int, seed: int, **keys) -> tuple[IsaacGymEnv, ReachVecTask]:
    task = ReachVecTask(num_envs, seed, EPISODE)
    return IsaacGymEnv(task, **keys), task


def test_adapter_reproduces_the_batched_env_trajectory():
    native = sim.make("reach", num_envs=8, seed=3, config=EPISODE, num_threads=1)
    env, task = adapted(8, 3, success_key="success", progress_key="progress")
    assert (env.num_envs, env.obs_dim, env.act_dim) == (8, native.obs_dim, native.act_dim)
    assert env.max_episode_steps == native.max_episode_steps == 25 and env.dt == pytest.approx(native.dt)
    first = env.reset()
    assert first.shape == (8, native.obs_dim) and not first.any()  # a fresh VecTask has observed nothing yet
    noise = torch.Generator().manual_seed(0)
    ended = {"terminated": 0, "truncated": 0}
    reset_at = None
    for step in range(90):
        if reset_at is None and step >= 60 and not (native.episode_step == 0).any():
            reset_at = step  # reset every env mid-episode: the task does it at the start of its next step
            native.reset()
            assert torch.equal(env.reset(), env.observation)
        action = native.expert() + 0.3 * torch.randn(8, native.act_dim, generator=noise)
        obs, reward, terminated, truncated, info = native.step(action)
        a_obs, a_reward, a_terminated, a_truncated, a_info = env.step(action)
        done = terminated | truncated
        assert torch.equal(a_reward, reward) and a_reward.dtype == torch.float32
        assert torch.equal(a_terminated, terminated) and torch.equal(a_truncated, truncated)
        assert a_terminated.dtype == a_truncated.dtype == torch.bool
        assert torch.equal(a_info["time_outs"], truncated)
        assert torch.equal(a_info["final_obs"], info["final_obs"])
        # ended envs: their terminal observation (the VecTask resets them next step); the others: the same obs
        assert torch.equal(a_obs[~done], obs[~done]) and torch.equal(a_obs[done], info["final_obs"][done])
        assert torch.equal(env.observation, a_obs)
        assert torch.equal(a_info["success"], info["success"]) and torch.equal(a_info["progress"], info["progress"])
        assert torch.equal(env.privileged()["progress"], info["progress"])
        steps = torch.from_numpy(native.episode_step)
        assert torch.equal(env.episode_step[~done], steps[~done])
        assert torch.equal(env.episode_step[done], task.progress_buf[done]) and (env.episode_step[done] > 0).all()
        ended["terminated"] += int(terminated.sum())
        ended["truncated"] += int(truncated.sum())
    assert ended["terminated"] > 0 and ended["truncated"] > 0, ended
    assert reset_at is not None and task.real_resets == 8  # only the explicit reset; the lazy ones were booked


def test_ppo_and_pbrs_train_on_the_adapted_task():
    env, task = adapted(8, 0, success_key="success", progress_key="progress")
    gamma = 0.99
    shaped = ShapedEnv(env, PrivilegedPotential(), mode="pbrs", gamma=gamma, learner_gamma=gamma, scale=2.0)
    env.reset()
    phi = shaped.phi.clone()
    timed_out = 0
    for _ in range(30):  # Φ(s') is the progress the step reached (pre-reset); terminal states have Φ = 0
        _, reward, terminated, truncated, info = shaped.step(torch.zeros(8, env.act_dim))
        task_reward = info["reward_terms"]["task"]
        expected = shaped_reward(task_reward, phi, info["progress"], terminated, gamma, 2.0)
        assert torch.allclose(reward, expected, atol=1e-6)
        phi = shaped.phi.clone()
        assert torch.equal(phi, info["progress"])  # the observed states' Φ: terminal ones until the next step
        timed_out += int(truncated.sum())
    assert timed_out == 8 and not terminated.any()  # zero actions never reach: every env timed out at step 25
    with pytest.raises(ShapingError, match="obs entries"):
        ShapedEnv(env, DistilledPotential(env.obs_dim + 1), mode="pbrs", gamma=gamma, learner_gamma=gamma)
    distilled = ShapedEnv(env, DistilledPotential(env.obs_dim), mode="pbrs", gamma=gamma, learner_gamma=gamma)
    _, reward, _, _, info = distilled.step(torch.zeros(8, env.act_dim))
    assert torch.isfinite(reward).all() and torch.isfinite(info["reward_terms"]["potential"]).all()

    torch.manual_seed(0)
    cfg = OmegaConf.to_container(OmegaConf.load(PPO_CONF), resolve=True)
    cfg.update(num_steps_per_env=10)
    cfg["algorithm"].update(num_learning_epochs=1, num_mini_batches=2)
    for net in ("actor", "critic"):
        cfg[net]["hidden_dims"] = [32, 32]
    vec = RslRlVecEnv(shaped)
    assert vec.cfg is task.cfg and vec.max_episode_length == 25
    vec.episode_length_buf = torch.arange(8)  # rsl-rl's init_at_random_ep_len writes it: into progress_buf
    assert task.progress_buf.tolist() == list(range(8))  # and the episodes end in 25 - i steps
    runner = OnPolicyRunner(vec, cfg, log_dir=None, device="cpu")
    before = [p.detach().clone() for p in runner.alg.get_policy().parameters()]
    runner.learn(6)
    assert any(not torch.equal(a, b) for a, b in zip(before, runner.alg.get_policy().parameters(), strict=True))
    episodes = vec.episodes
    assert len(episodes) >= 8 and all(1 <= n <= 25 for n in episodes.lengths)
    assert all(isinstance(s, bool) for s in episodes.success)
    assert {"task", "shaping", "potential"} <= set(episodes.term_sums)


class _Gym:
    def __init__(self) -> None:
        self.destroyed: list[object] = []

    def destroy_viewer(self, viewer: object) -> None:
        self.destroyed.append(viewer)


def test_without_success_keys_bad_input_and_close():
    env, task = adapted(4, 0)
    env.reset()
    _, _, _, _, info = env.step(torch.zeros(4, env.act_dim))
    assert torch.isnan(info["success"]).all() and torch.isnan(info["progress"]).all()  # unknown, not 0
    with pytest.raises(ValueError, match="progress_key"):
        env.privileged()
    vec = RslRlVecEnv(env)
    for _ in range(EPISODE["max_episode_steps"] - 1):  # the 25th step of the episode
        _, _, dones, extras = vec.step(torch.zeros(4, env.act_dim))
    assert dones.all() and math.isnan(float(extras["log"]["/success"]))
    with pytest.raises(ValueError, match=r"shape \(4, 7\)"):
        env.step(torch.zeros(4, env.act_dim + 1))
    with pytest.raises(ValueError, match="NaN or inf entries in envs \\[2\\]"):
        env.step(torch.zeros(4, env.act_dim).index_fill_(0, torch.tensor([2]), math.nan))
    with pytest.raises(ValueError, match="float"):
        env.step(torch.zeros(4, env.act_dim, dtype=torch.long))
    bad = IsaacGymEnv(task, success_key="consecutive_successes")
    task.extras["consecutive_successes"] = torch.tensor(3.0)  # ShadowHand's is a scalar, not per env
    with pytest.raises(ValueError, match=r"extras\['consecutive_successes'\] must be a tensor of shape \(4,\)"):
        bad.step(torch.zeros(4, env.act_dim))
    env.close()  # a headless task: nothing to close
    viewer = object()
    task.gym, task.viewer = _Gym(), viewer
    env.close()
    assert task.gym.destroyed == [viewer] and task.viewer is None
