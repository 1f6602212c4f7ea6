"""Benchmark commands run and report what they promise (correctness, not timing)."""

import json
import subprocess
import sys

import numpy as np
import torch
from mujoco import rollout

import sim
from sim.bench import RolloutBound, bench_render, bench_sim, record_physics


def assert_ratio_of_rounded(ratio: float, a: float, b: float) -> None:
    """One round: ``ratio`` is a / b, up to the rounding of what is reported (ratios to 0.001, rates to 0.1 —
    a slow first round of a few frames makes a rate small and its rounding a visible share of it)."""
    expected = a / b
    assert abs(ratio - expected) <= 0.0005 + expected * (0.05 / a + 0.05 / b) + 1e-9


def test_bench_sim_reports_rates_and_ratios():
    result = bench_sim("reach", num_envs=4, steps=10, rounds=1)
    assert set(result) == {
        "task",
        "num_envs",
        "env_steps_per_s",
        "bound_steps_per_s",
        "ratio_vs_bound",
        "peer_steps_per_s",
        "ratio_vs_peer",
        "open_loop_steps_per_s",
        "threaded_physics_steps_per_s",
    }
    assert result["env_steps_per_s"] > 0 and result["bound_steps_per_s"] > 0 and result["peer_steps_per_s"] > 0
    assert_ratio_of_rounded(result["ratio_vs_peer"], result["env_steps_per_s"], result["peer_steps_per_s"])


def test_bound_redoes_the_envs_own_physics_state_for_state():
    """The bound's calls start where the env's physics started (after auto-resets too) and end where it ended."""
    env = sim.make("pick_place", num_envs=4, seed=0, config={"max_episode_steps": 6})
    actions = torch.rand(10, 4, env.act_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1
    states, warmstarts, controls = record_physics(env, actions)
    assert env.physics.step.__func__ is type(env.physics).step  # the recording hook is gone afterwards
    bound = RolloutBound(env, (states, warmstarts, controls))
    pool = rollout.Rollout(nthread=1)
    try:
        reset_seen = continued = 0
        for step in range(len(actions) - 1):
            end, _ = pool.rollout(bound.models, bound.datas[:1], states[step], bound.controls[step],
                                  initial_warmstart=warmstarts[step])  # fmt: skip
            for i in range(env.num_envs):
                if states[step + 1, i, 0] == 0.0:  # time 0: the env auto-reset after this step
                    reset_seen += 1
                    continue
                continued += 1
                np.testing.assert_allclose(end[i, -1], states[step + 1, i], rtol=0, atol=1e-9)
        assert reset_seen == 4 and continued == 4 * 8
        assert bound.closed_loop() > 0 and bound.open_loop() > 0
    finally:
        pool.close()
        bound.close()
        env.close()


def test_bench_render_reports_rates_and_ratio():
    result = bench_render("push_cube", num_envs=2, cameras=("front", "wrist"), rounds=1)
    assert result["cameras"] == ["front", "wrist"]
    assert result["frames_per_s"] > 0 and result["bare_frames_per_s"] > 0
    # one round: the ratio is that round's two rates divided (rounded as reported)
    assert_ratio_of_rounded(result["ratio"], result["frames_per_s"], result["bare_frames_per_s"])


def test_cli_prints_one_json_object():
    cmd = [
        sys.executable,
        "-m",
        "robo_reward.cli",
        "bench",
        "sim",
        "--task",
        "ant",
        "--num-envs",
        "4",
        "--steps",
        "10",
        "--rounds",
        "1",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["task"] == "ant" and result["num_envs"] == 4


def test_cli_unknown_task_exits_2_with_one_line():
    cmd = [sys.executable, "-m", "robo_reward.cli", "bench", "sim", "--task", "fly", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"unknown task 'fly'; known tasks: {', '.join(sorted(sim.TASKS))}" in proc.stderr
