"""Benchmark commands run and report what they promise (correctness, not timing)."""

import json
import subprocess
import sys

import sim
from sim.bench import bench_render, bench_sim


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
    assert abs(result["ratio_vs_peer"] - result["env_steps_per_s"] / result["peer_steps_per_s"]) < 0.01


def test_bench_render_reports_rates_and_ratio():
    result = bench_render("push_cube", num_envs=2, cameras=("front", "wrist"), rounds=1)
    assert result["cameras"] == ["front", "wrist"]
    assert result["frames_per_s"] > 0 and result["bare_frames_per_s"] > 0
    # one round: the ratio is that round's two rates divided (rounded as reported)
    assert abs(result["ratio"] - result["frames_per_s"] / result["bare_frames_per_s"]) < 0.01


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
