"""Gymnasium views of the batched env."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # registers robo_reward/*-v0


@pytest.mark.parametrize("env_id", [cls.gym_id for cls in sim.TASKS.values()])
def test_single_env_passes_gymnasium_checker(env_id):
    env = gymnasium.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and isinstance(terminated, bool) and "success" in info
    env.close()


def test_single_env_returns_terminal_observation_at_episode_end():
    """The last step returns the state the episode ended in (not the next episode's first), exactly."""
    short = gymnasium.make("robo_reward/Reach-v0", config={"max_episode_steps": 3})
    long = gymnasium.make("robo_reward/Reach-v0", config={"max_episode_steps": 10})
    first, _ = short.reset(seed=0)
    assert np.array_equal(first, long.reset(seed=0)[0])
    for _ in range(3):
        obs, _, terminated, truncated, _ = short.step(np.zeros(7, dtype=np.float32))
        same, *_ = long.step(np.zeros(7, dtype=np.float32))
    assert truncated and not terminated
    np.testing.assert_array_equal(obs, same)  # the same episode, three steps in
    restarted = short.unwrapped.env.observation.numpy()[0]  # the batched env already began the next one
    assert np.abs(restarted - obs).max() > 1e-3
    short.close()
    long.close()


def test_vector_env_same_step_autoreset():
    vec = gymnasium.make_vec("robo_reward/Reach-v0", num_envs=4, config={"max_episode_steps": 4})
    assert vec.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (4, 23) and vec.single_action_space.shape == (7,)
    for _ in range(4):
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    assert truncated.all() and not terminated.any() and info["_final_obs"].all()
    assert info["final_obs"].shape == (4, 23) and not np.allclose(info["final_obs"], obs)
    assert reward.shape == (4,)
    frames = vec.render()
    assert frames.shape == (4, 3, 64, 64, 3)
    vec.close()
