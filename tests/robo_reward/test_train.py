"""robo-train and its rsl-rl adapter, against the real batched sim env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict

import sim
from robo_reward.config import task_config
from robo_reward.rl import EpisodeLog, RslRlVecEnv
from robo_reward.train import iteration_history, steps_to

CONF = Path(__file__).resolve().parents[2] / "conf"
STEPS_PER_ENV = 24  # conf/algo/ppo.yaml num_steps_per_env


def run_train(run_dir: Path, *overrides: str, timeout: float) -> dict:
    """Run ``python -m robo_reward.train`` into ``run_dir``; return its train_summary.json."""
    cmd = [sys.executable, "-m", "robo_reward.train", *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"robo-train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((run_dir / "train_summary.json").read_text())


def test_adapter_steps_real_env_with_rsl_rl_types():
    env = sim.make("reach", num_envs=8, seed=3, config={"max_episode_steps": 5})
    vec = RslRlVecEnv(env)
    try:
        assert (vec.num_envs, vec.num_actions, vec.max_episode_length) == (8, env.act_dim, 5)
        obs = vec.get_observations()
        assert isinstance(obs, TensorDict)
        assert list(obs.keys()) == ["policy"] and obs.batch_size == torch.Size([8])
        assert obs["policy"].shape == (8, env.obs_dim) and obs["policy"].dtype == torch.float32
        assert vec.episode_length_buf.dtype == torch.int64 and vec.episode_length_buf.tolist() == [0] * 8

        actions = torch.zeros(8, env.act_dim)  # the arm holds still: no env reaches its target by chance
        for step in range(1, 6):
            obs, rewards, dones, extras = vec.step(actions)
            assert isinstance(obs, TensorDict) and obs["policy"].shape == (8, env.obs_dim)
            assert rewards.shape == (8,) and rewards.dtype == torch.float32
            assert dones.shape == (8,) and dones.dtype == torch.int64
            time_outs = extras["time_outs"]
            assert time_outs.shape == (8,) and time_outs.dtype == torch.bool
            log = extras["log"]
            assert {"/reward/distance", "/reward/success", "/reward/action_l2"} <= set(log)
            assert all(key.startswith("/") and value.ndim == 0 for key, value in log.items())
            if step < 5:
                assert not dones.any() and not time_outs.any() and "/success" not in log
                assert vec.episode_length_buf.tolist() == [step] * 8
        assert time_outs.all() and dones.eq(1).all()
        assert log["/success"].item() == 0.0
        assert vec.episode_length_buf.tolist() == [0] * 8  # auto-reset
        assert vec.episodes.lengths == [5] * 8 and vec.episodes.end_step == [5] * 8
        assert vec.episodes.success == [False] * 8

        # rsl-rl's init_at_random_ep_len assigns the buffer; the env's time limit must follow.
        vec.episode_length_buf = torch.tensor([4, 0, 0, 0, 0, 0, 0, 4])
        _, _, dones, extras = vec.step(actions)
        assert extras["time_outs"].tolist() == [True] + [False] * 6 + [True]
        assert dones.tolist() == [1] + [0] * 6 + [1]
        assert vec.episodes.lengths[-2:] == [1, 1]  # steps actually taken, not the assigned counter
    finally:
        vec.close()


def test_iteration_history_buckets_episodes_by_rollout():
    episodes = EpisodeLog(
        end_step=[5, 24, 25, 72],
        returns=[-1.0, 3.0, 2.0, 7.0],
        lengths=[5, 24, 25, 47],
        success=[False, True, True, False],
        term_sums={"task": [0.0, 1.0, 1.0, 0.0]},
    )
    history = iteration_history(episodes, steps_per_iteration=24, iterations=4)
    assert [row["episodes"] for row in history] == [2, 1, 1, 0]
    assert history[0]["mean_return"] == 1.0 and history[0]["success_rate"] == 0.5
    assert history[0]["task_return"] == 0.5  # the task term alone, apart from shaping
    assert history[2]["mean_return"] == 7.0 and history[2]["success_rate"] == 0.0
    assert history[3]["mean_return"] is None and history[3]["success_rate"] is None
    assert [row["episodes"] for row in iteration_history(episodes, 24, 4, start=2)] == [0, 1, 1, 0]


def test_steps_to_rate_needs_a_full_batch_of_episodes():
    rows = [{"episodes": 1, "successes": 1, "env_steps": 100}, {"episodes": 4, "successes": 3, "env_steps": 200},
            {"episodes": 4, "successes": 4, "env_steps": 300}, {"episodes": 4, "successes": 4, "env_steps": 400}]
    assert steps_to(rows, 0.9, "env_steps", min_episodes=1) == 100  # one lucky episode
    assert steps_to(rows, 0.9, "env_steps", min_episodes=8) == 400  # 7/8 at 300, 8/8 at 400
    assert steps_to(rows, 0.9, "env_steps", min_episodes=100) is None


@pytest.mark.parametrize("task", sorted(sim.TASKS))
def test_config_composes_and_task_overrides_reach_sim(task):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=[f"task={task}", "num_envs=2", "task.max_episode_steps=7"])
    assert cfg.task.name == task and cfg.algo.num_steps_per_env == STEPS_PER_ENV
    with sim.make(cfg.task.name, num_envs=cfg.num_envs, config=task_config(cfg.task)) as env:
        assert env.max_episode_steps == 7


def test_reward_weight_ablation_is_one_override():
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=["task=reach", "task.reward.success=10"])
    with sim.make(cfg.task.name, config=task_config(cfg.task)) as env:
        assert env.task.config["reward"]["success"] == 10
        assert env.task.config["reward"]["distance"] == 1.0  # the other weights keep their defaults


def test_robo_train_writes_checkpoint_and_summary(tmp_path):
    summary = run_train(tmp_path, "task=reach", "iterations=3", "chunk_iterations=1", "num_envs=16",
                        "eval_video.steps=5", timeout=300)  # fmt: skip
    assert summary["task"] == "reach" and summary["iterations"] == 3
    assert summary["env_steps"] == 3 * STEPS_PER_ENV * 16
    assert len(summary["history"]) == 3 and summary["wall_time_s"] > 0
    assert [row["env_steps"] for row in summary["history"]] == [k * STEPS_PER_ENV * 16 for k in (1, 2, 3)]
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000 and (tmp_path / "eval.mp4").exists()
    assert summary["reward_hacking"]["flagged"] is False
    assert summary["code"]["commit"] is None or len(summary["code"]["commit"]) == 40  # export puts it in spec.json

    checkpoint = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert {"actor_state_dict", "critic_state_dict", "optimizer_state_dict", "iter"} <= set(checkpoint)
    assert checkpoint["infos"]["config"]["task"]["name"] == "reach"
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1, events  # one writer over the three chunks (rsl-rl alone opens one per learn call)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0])).Reload()
    assert [event.step for event in scalars.Scalars("Loss/learning_rate")] == [0, 1, 2], scalars.Tags()["scalars"]


@pytest.mark.slow
def test_ppo_learns_reach(tmp_path):
    """PPO on reach's dense reward: the initial policy's episodes vs the episodes of the last iterations.

    reach's time limit is 100 steps, so every env's first episode (the initial policy's) has ended by
    iteration 5 (24 steps each). Measured on 2 cores: seed 0, 60 iterations (~25 s): first episodes
    return -28.6 with 3 % success, the last 5 iterations +3.5 with 100 %; seeds 0-2 at 50 iterations
    (~20 s each): -29 to -38 → +2.1 to +3.4, 99-100 % success.
    """
    summary = run_train(
        tmp_path, "task=reach", "task_reward=dense", "iterations=60", "num_envs=64", "seed=0", timeout=600
    )
    history = summary["history"]

    def pooled(rows: list[dict]) -> tuple[float, float]:
        count = sum(row["episodes"] for row in rows)
        assert count > 0
        mean_return = sum(row["mean_return"] * row["episodes"] for row in rows if row["episodes"]) / count
        return mean_return, sum(row["successes"] for row in rows) / count

    first_return, first_success = pooled(history[:5])
    last_return, last_success = pooled(history[-5:])
    print(
        f"reach PPO: first episodes return {first_return:.2f} success {first_success:.2f}; "
        f"last 5 iterations return {last_return:.2f} success {last_success:.2f}"
    )
    assert last_return > first_return + 20.0
    assert last_success >= 0.9 and last_success > first_success + 0.5
    assert summary["success_rate_last"] >= 0.9


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("train", overrides=list(overrides))


def test_cli_refusal_is_one_line_exit_2_and_leaves_no_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "robo_reward.train", "task=reach", "reward=prm", "shaping=pbrs",
           "reward.model=/nonexistent/prm", f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines == ["robo-train: error: reward.model=/nonexistent/prm: no such folder"], proc.stderr[-2000:]
    assert not run_dir.exists(), sorted(p.name for p in run_dir.rglob("*"))


def save_tiny_prm(folder: Path, cameras: list[str]) -> Path:
    from robo_reward.models.prm import PRMConfig, ProgressRewardModel

    ProgressRewardModel(PRMConfig(cameras=cameras, instructions=["reach"], channels=[4, 8])).save(folder)
    return folder


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["reward=prm", "shaping=pbrs", "reward.model=/nonexistent/prm"], "reward.model=/nonexistent/prm: no such"),
        (["reward=sparse", "shaping=pbrs", "shaping.gamma=0.9"], "differs from the learner's"),
        (["iterations=abc"], "iterations=abc: must be a positive integer"),
        (["num_envs=0"], "num_envs=0: must be a positive integer"),
        (["shaping=pbrs", "shaping.potential=magic"], "shaping.potential=magic: must be one of"),
        (["reward=prm", "shaping=pbrs", "shaping.potential=model", "reward.model=OTHER_CAMERAS"], "cameras"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, overrides, expected):
    from robo_reward.train import train

    model = save_tiny_prm(tmp_path / "prm_top", ["front", "top"])  # "top" is no camera of reach
    overrides = [o.replace("OTHER_CAMERAS", str(model)) for o in overrides]
    cfg = compose_train("task=reach", "iterations=2", "num_envs=4", *overrides)
    with pytest.raises(ValueError) as error:
        train(cfg, tmp_path / "run")
    message = str(error.value)
    assert expected in message and "\n" not in message
    assert not (tmp_path / "run").exists()


def test_killed_training_resumes_step_counter_and_optimiser(tmp_path):
    """SIGKILL after the second chunk, resume: history, env steps and Adam's step count continue."""
    run = tmp_path / "run"
    common = ["task=reach", "num_envs=16", "chunk_iterations=2", "eval_video.steps=0", "progress_bar=false"]
    cmd = [sys.executable, "-m", "robo_reward.train", *common, "iterations=40", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = run / "train_state.json"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["iterations_done"] >= 4:
                break
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
    done = json.loads(state.read_text())["iterations_done"]
    assert 4 <= done < 40, "the run was not killed mid-way"

    summary = run_train(run, *common, "iterations=10", f"resume={run}", timeout=300)
    assert summary["iterations"] == 10 and summary["env_steps"] == 10 * STEPS_PER_ENV * 16
    assert [row["iteration"] for row in summary["history"]] == list(range(10))
    assert [row["env_steps"] for row in summary["history"]] == [k * STEPS_PER_ENV * 16 for k in range(1, 11)]
    optimiser = torch.load(run / "model_final.pt", weights_only=True)["optimizer_state_dict"]
    updates_per_iteration = 5 * 4  # conf/algo/ppo.yaml: learning epochs x mini-batches
    steps = {float(state["step"]) for state in optimiser["state"].values()}
    assert steps == {10 * updates_per_iteration}, "Adam's state restarted instead of continuing"

    other = [sys.executable, "-m", "robo_reward.train", f"resume={run}", "iterations=12", "seed=5"]
    refused = subprocess.run(other, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"robo-train: error: {run} holds another run (seed: 0 → 5); a resumed run keeps its config and inputs "
        "(start a new run instead)"
    ]
    assert json.loads((run / "train_summary.json").read_text())["iterations"] == 10  # untouched


def test_pbrs_with_privileged_potential_learns_reach(tmp_path):
    """Sparse reward + PBRS(simulator progress) on reach: success of the first episodes vs the last iterations."""
    summary = run_train(tmp_path, "task=reach", "reward=sparse", "shaping=pbrs", "task.terminate_on_success=false",
                        "iterations=40", "num_envs=64", "eval_video.steps=0", timeout=600)  # fmt: skip
    history = summary["history"]
    first = sum(r["successes"] for r in history[:5]) / max(1, sum(r["episodes"] for r in history[:5]))
    last = summary["success_rate_last"]
    print(f"reach, sparse + PBRS(privileged): first episodes {first:.2f} success, last iterations {last:.2f}")
    assert last >= 0.3 and last > first + 0.3  # measured: 0.00-0.09 -> 0.46-0.53 in 40 iterations
    assert summary["shaping"] == "pbrs" and summary["potential"] == "privileged"


def test_multirun_sweeps_seeds_and_shaping(tmp_path):
    cmd = [sys.executable, "-m", "robo_reward.train", "-m", "task=reach", "reward=sparse", "seed=0,1",
           "shaping=none,pbrs", "iterations=1", "num_envs=4", "eval_video.steps=0", "progress_bar=false",
           f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.parent.name for p in tmp_path.glob("*/train_summary.json"))
    assert runs == ["0_sparse_none_seed0", "1_sparse_pbrs_seed0", "2_sparse_none_seed1", "3_sparse_pbrs_seed1"]
    summary = json.loads((tmp_path / "3_sparse_pbrs_seed1" / "train_summary.json").read_text())
    assert (summary["seed"], summary["shaping"], summary["potential"]) == (1, "pbrs", "privileged")
