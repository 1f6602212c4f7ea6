"""``robo-train``: PPO (rsl-rl-lib) on one sim task, configured by Hydra from ``conf/train.yaml``.

    robo-train task=push_cube num_envs=128 iterations=500
    robo-train task=reach task_reward=sparse task.reward.success=10

The story: make the batched env → present it to rsl-rl → ``OnPolicyRunner.learn`` → save
``model_final.pt`` (rsl-rl's checkpoint format) and ``train_summary.json`` in the run directory,
next to rsl-rl's TensorBoard events and intermediate checkpoints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rsl_rl.runners import OnPolicyRunner

import sim
from robo_reward.config import task_config
from robo_reward.rl import EpisodeLog, RslRlVecEnv

CHECKPOINT = "model_final.pt"
SUMMARY = "train_summary.json"


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train a policy as ``cfg`` says, write the checkpoint and summary into ``run_dir``; return the summary."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.torch_threads)
    env = sim.make(
        cfg.task.name,
        num_envs=cfg.num_envs,
        device=cfg.device,
        seed=cfg.seed,
        reward=cfg.task_reward,
        config=task_config(cfg.task),
    )
    vec_env = RslRlVecEnv(env)
    try:
        train_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
        runner = OnPolicyRunner(vec_env, train_cfg, log_dir=str(run_dir), device=cfg.device)
        runner.add_git_repo_to_log(__file__)  # the run dir records this repo's commit and diff
        start = time.perf_counter()
        runner.learn(num_learning_iterations=cfg.iterations)
        wall_time = time.perf_counter() - start
        runner.save(str(run_dir / CHECKPOINT), infos={"config": OmegaConf.to_container(cfg, resolve=True)})
    finally:
        vec_env.close()

    env_steps = vec_env.num_steps * vec_env.num_envs
    history = iteration_history(vec_env.episodes, cfg.algo.num_steps_per_env, cfg.iterations)
    last = history[-cfg.summary_iterations :]
    last_episodes = sum(row["episodes"] for row in last)
    last_successes = sum(row["successes"] for row in last)
    summary = {
        "task": cfg.task.name,
        "task_reward": cfg.task_reward,
        "task_config": task_config(cfg.task),
        "num_envs": cfg.num_envs,
        "seed": cfg.seed,
        "iterations": cfg.iterations,
        "env_steps": env_steps,
        "wall_time_s": round(wall_time, 3),
        "env_steps_per_s": round(env_steps / wall_time, 1),
        "episodes": len(vec_env.episodes),
        "summary_iterations": len(last),
        "success_rate_last": last_successes / last_episodes if last_episodes else None,
        "checkpoint": CHECKPOINT,
        "history": history,
    }
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def iteration_history(episodes: EpisodeLog, steps_per_iteration: int, iterations: int) -> list[dict[str, Any]]:
    """Per PPO iteration: the episodes that ended during its rollout, their mean return and success rate.

    ``mean_return`` and ``success_rate`` are ``None`` for an iteration in which no episode ended.
    """
    rows = [{"iteration": it, "episodes": 0, "successes": 0, "return_sum": 0.0} for it in range(iterations)]
    for end_step, ret, success in zip(episodes.end_step, episodes.returns, episodes.success, strict=True):
        row = rows[(end_step - 1) // steps_per_iteration]
        row["episodes"] += 1
        row["successes"] += int(success)
        row["return_sum"] += ret
    for row in rows:
        count, return_sum = row["episodes"], row.pop("return_sum")
        row["mean_return"] = return_sum / count if count else None
        row["success_rate"] = row["successes"] / count if count else None
    return rows


@hydra.main(config_path="../conf", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = train(cfg, run_dir)
    print(
        f"trained {summary['task']} for {summary['iterations']} iterations ({summary['env_steps']} env steps, "
        f"{summary['env_steps_per_s']:.0f} steps/s); success over the last {summary['summary_iterations']} "
        f"iterations: {summary['success_rate_last']}; wrote {run_dir / CHECKPOINT} and {run_dir / SUMMARY}"
    )


if __name__ == "__main__":
    main()
