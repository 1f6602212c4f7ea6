"""Scripted experts succeed, random actions do not, and privileged progress tracks the expert."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import sim

WITH_EXPERT = sorted(name for name, cls in sim.TASKS.items() if cls.has_expert())


def run_episodes(task, policy, episodes, num_envs=64, seed=0):
    """Run ``policy(env, obs)`` until ``episodes`` episodes end; return per-episode records."""
    env = sim.make(task, num_envs=num_envs, seed=seed)
    obs = env.reset()
    progress = [[] for _ in range(num_envs)]
    stages = [[] for _ in range(num_envs)]
    records = []
    while len(records) < episodes:
        obs, _, terminated, truncated, info = env.step(policy(env, obs))
        for i in range(num_envs):
            progress[i].append(float(info["progress"][i]))
            stages[i].append(int(info["stage"][i]))
        for i in (terminated | truncated).nonzero()[:, 0].tolist():
            records.append(
                {"success": bool(info["success"][i]), "progress": np.array(progress[i]), "stages": stages[i]}
            )
            progress[i], stages[i] = [], []
    env.close()
    return records


def expert(env, obs):
    return env.expert(obs)


def random_policy(env, obs):
    return torch.rand(env.num_envs, env.act_dim) * 2 - 1


@pytest.fixture(scope="module", params=WITH_EXPERT)
def expert_run(request):
    # 200 envs: one batch of episodes, so each task's check costs one episode length of batched steps
    return request.param, run_episodes(request.param, expert, episodes=200, num_envs=200, seed=11)


def test_expert_succeeds_in_95_percent_of_200_episodes(expert_run):
    task, records = expert_run
    rate = np.mean([r["success"] for r in records])
    assert len(records) >= 200
    assert rate >= 0.95, f"{task} expert success {rate:.3f}"


def test_progress_rises_with_time_and_is_one_at_success(expert_run):
    task, records = expert_run
    successes = [r for r in records if r["success"] and len(r["progress"]) > 3]
    # up to the first step at the goal: an episode that does not end on success holds progress 1 after it
    rising = [r["progress"][: int(np.argmax(r["progress"] == 1.0)) + 1] for r in successes]
    rho = [spearmanr(p, np.arange(len(p))).statistic for p in rising if len(p) > 3]
    assert np.mean(rho) >= 0.9, f"{task} mean Spearman {np.mean(rho):.3f}"
    assert all(r["progress"][-1] == 1.0 for r in successes)
    assert all(r["progress"].max() <= 1.0 and r["progress"].min() >= 0.0 for r in records)


def test_expert_passes_through_every_stage_in_order(expert_run):
    task, records = expert_run
    names = sim.TASKS[task].stage_names
    for r in (r for r in records if r["success"]):
        assert r["stages"][-1] == len(names) - 1
        assert set(r["stages"]) == set(range(len(names))), f"{task}: an expert episode skipped a stage"
        firsts = [r["stages"].index(s) for s in range(len(names))]
        assert firsts == sorted(firsts)


@pytest.mark.parametrize("task", WITH_EXPERT)
def test_random_actions_rarely_succeed(task):
    records = run_episodes(task, random_policy, episodes=64, seed=5)
    rate = np.mean([r["success"] for r in records])
    assert rate < 0.10, f"{task} random success {rate:.3f}"


def test_ee_delta_mode_runs_the_ik_in_the_env():
    """push_cube with tool-centre actions (5-D, IK inside the env): the expert still succeeds, random actions not."""
    config = {"action_mode": "ee_delta"}
    with sim.make("push_cube", num_envs=32, seed=2, config=config) as env:
        assert env.act_dim == 5
        obs, successes = env.reset(), []
        while len(successes) < 32:
            obs, _, terminated, truncated, info = env.step(env.expert(obs))
            successes += info["success"][terminated | truncated].tolist()
    assert np.mean(successes) >= 0.9
