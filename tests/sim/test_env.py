"""The batched env contract, on the real simulator."""

import numpy as np
import pytest
import torch

import sim

TASKS = sorted(sim.TASKS)  # every registered task: the matrix follows the registry


@pytest.mark.parametrize("task", TASKS)
def test_shapes_and_dtypes(task):
    with sim.make(task, num_envs=4, seed=0) as env:
        obs = env.reset()
        assert obs.shape == (4, env.obs_dim) and obs.dtype == torch.float32
        action = torch.zeros(4, env.act_dim)
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs.shape == (4, env.obs_dim) and obs.dtype == torch.float32
        assert reward.shape == (4,) and reward.dtype == torch.float32
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert info["success"].dtype == torch.bool and info["success"].shape == (4,)
        assert info["progress"].shape == (4,)
        assert ((info["progress"] >= 0) & (info["progress"] <= 1)).all()
        assert info["final_obs"].shape == obs.shape
        assert info["stage"].dtype == torch.int64
        assert set(info["reward_terms"]) == set(env.task.config["reward"])
        assert torch.isfinite(obs).all() and torch.isfinite(reward).all()


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_trajectory_for_any_thread_count(task):
    def rollout(num_threads):
        with sim.make(task, num_envs=6, seed=3, num_threads=num_threads) as env:
            gen = torch.Generator().manual_seed(0)
            trace = [env.reset()]
            for _ in range(30):
                obs, reward, *_ = env.step(torch.rand(6, env.act_dim, generator=gen) * 2 - 1)
                trace += [obs, reward[:, None]]
            return torch.cat(trace, dim=1)

    first = rollout(2)
    assert torch.equal(first, rollout(2))
    assert torch.equal(first, rollout(1))
    with sim.make(task, num_envs=6, seed=4) as other:
        assert not torch.equal(first[:, : other.obs_dim], other.reset())


@pytest.mark.parametrize("task", TASKS)
def test_observation_after_auto_reset_describes_the_new_episode(task):
    """Tasks cache what reward, evaluation and observation share (``update``); an observation returned for an
    env that just auto-reset must come from the new episode's state, not the cache of the one that ended
    (e.g. pick_place's ``grasped`` entry of a cube held at the time limit)."""
    with sim.make(task, num_envs=4, seed=0, config={"max_episode_steps": 35}) as env:
        obs, gen, resets = env.reset(), torch.Generator().manual_seed(0), 0
        for _ in range(80):
            try:
                action = env.expert(obs)  # the expert reaches the grasps and contacts a random policy rarely does
            except NotImplementedError:
                action = torch.rand(4, env.act_dim, generator=gen) * 2 - 1
            obs, _, terminated, truncated, _ = env.step(action)
            resets += int((terminated | truncated).sum())
            env.task.update()  # recompute from the current state
            assert torch.equal(obs, torch.from_numpy(env.task.observe()))
        assert resets >= 8


def test_time_limit_truncates_and_auto_reset_reports_final_obs():
    with sim.make("reach", num_envs=3, seed=0, config={"max_episode_steps": 5}) as env:
        obs = env.reset()
        for step in range(5):
            prev = obs
            obs, _, terminated, truncated, info = env.step(torch.zeros(3, env.act_dim))
            if step < 4:
                assert not truncated.any() and torch.equal(info["final_obs"], obs)
        assert truncated.all() and not terminated.any()
        assert torch.equal(info["time_outs"], truncated)
        # the final observation is the state reached by the last step, not the fresh episode
        assert not torch.allclose(info["final_obs"], obs)
        assert torch.allclose(info["final_obs"][:, :6], prev[:, :6], atol=0.05)
        assert (env.episode_step == 0).all()


def test_success_terminates_and_resets():
    with sim.make("reach", num_envs=8, seed=1) as env:
        obs = env.reset()
        for _ in range(100):
            obs, _, terminated, truncated, info = env.step(env.expert(obs))
            if terminated.any():
                break
        assert terminated.any()
        done = terminated.nonzero()[:, 0]
        assert info["success"][done].all() and not truncated[done].any()
        assert (info["progress"][done] == 1.0).all()
        assert (info["stage"][done] == 1).all()
        assert not torch.allclose(info["final_obs"][done], obs[done])


def test_ant_falls_terminate_and_forward_velocity_is_measured():
    with sim.make("ant", num_envs=2, seed=0) as env:
        env.reset()
        for data in env.physics.datas:
            data.qpos[2] = 2.0  # above the healthy range (falling from 2 m)
        env.physics.refresh(np.arange(2))
        _, _, terminated, truncated, info = env.step(torch.zeros(2, 8))
        assert terminated.all() and not truncated.any()
        assert "forward_velocity" in info["reward_terms"]
    with sim.make("ant", num_envs=2, seed=0) as env:  # the torso sliding along ±x at 1 m/s, no action
        env.reset()
        for data, speed in zip(env.physics.datas, (1.0, -1.0), strict=True):
            data.qvel[0] = speed
        env.physics.refresh(np.arange(2))
        _, _, _, _, info = env.step(torch.zeros(2, 8))
        velocity = np.asarray(info["reward_terms"]["forward_velocity"])
        assert 0.5 < velocity[0] < 1.2 and -1.2 < velocity[1] < -0.5, velocity


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(4, 6),
        torch.zeros(3, 7),
        torch.zeros(4, 7, dtype=torch.int64),
        np.zeros((4, 7), dtype=np.int32),
        torch.full((4, 7), float("nan")),
        torch.full((4, 7), float("inf")),
    ],
)
def test_bad_actions_are_refused_naming_the_shape(bad):
    with sim.make("reach", num_envs=4) as env:
        with pytest.raises(ValueError, match=r"\(4, 7\)"):
            env.step(bad)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="known tasks: " + ", ".join(sorted(sim.TASKS)) + "$"):
        sim.make("stack_cubes")


def test_config_overrides_reward_weights_and_rejects_unknown_keys():
    with sim.make("reach", num_envs=2, config={"reward": {"distance": 0.0, "action_l2": 0.0, "success": 0.0}}) as env:
        _, reward, *_ = env.step(torch.ones(2, 7))
        assert torch.equal(reward, torch.zeros(2))
    with pytest.raises(KeyError, match="distanse"):
        sim.make("reach", config={"reward": {"distanse": 1.0}})


def test_sparse_reward_is_success():
    with sim.make("reach", num_envs=8, seed=1, reward="sparse") as env:
        obs = env.reset()
        for _ in range(100):
            obs, reward, terminated, _, info = env.step(env.expert(obs))
            assert torch.equal(reward, info["success"].float())
            if terminated.any():
                break
        assert reward.sum() > 0


def test_reset_envs_restarts_only_those_and_leaves_returned_observations_alone():
    with sim.make("reach", num_envs=3, seed=0) as env:
        obs, *_ = env.step(torch.ones(3, 7))
        kept = obs.clone()
        new = env.reset_envs([1])
        assert torch.equal(obs, kept)  # what step returned is not rewritten behind the caller's back
        assert torch.equal(new[[0, 2]], kept[[0, 2]]) and not torch.equal(new[1], kept[1])
        assert env.episode_step.tolist() == [1, 0, 1]


def test_push_cube_layout_that_admits_no_goal_is_refused_in_one_line():
    """Goals 12-20 cm ahead of cubes up to x = 0.52 cannot fit a goal box ending at x = 0.60: a clear error
    naming the keys, instead of redrawing forever."""
    with pytest.raises(ValueError, match=r"goal_distance \[0.12, 0.2\].*widen the goal box"):
        sim.make("push_cube", num_envs=64, config={"goal_distance": [0.12, 0.2]})
    with sim.make("push_cube", num_envs=64, config={"goal_distance": [0.12, 0.2], "goal_high": [0.75, 0.2]}) as env:
        task = env.task
        distance = np.linalg.norm(task.goal[:, :2] - task.cube_start[:, :2], axis=1)
        assert ((distance >= 0.12) & (distance <= 0.2)).all() and (task.goal[:, 0] <= 0.75).all()
