"""``robo-reward pipeline``: the main job, read top to bottom.

Today: make the env → run the scripted expert, filming every task camera → write an mp4 and a
report → benchmark the simulator against its physics bound. Later stages (train reward, label,
train policy, export) slot in after the recording.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tqdm import tqdm

import sim
from robo_reward.config import task_config
from robo_reward.video import tile_views, write_mp4
from sim.bench import bench_sim

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def load_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="pipeline", overrides=overrides)


def run_expert(cfg: DictConfig) -> tuple[dict, list[np.ndarray], float]:
    """Run the expert until ``cfg.episodes`` episodes finish; return stats, tiled frames and the env's fps."""
    env = sim.make(
        cfg.task.name,
        num_envs=cfg.num_envs,
        seed=cfg.seed,
        render_size=(cfg.res, cfg.res),
        config=task_config(cfg.task),
    )
    obs = env.reset()
    shown = min(cfg.video_envs, cfg.num_envs)
    frames, successes, lengths, finished = [], [], [], 0
    start = time.perf_counter()
    with tqdm(total=cfg.episodes, desc=f"expert {cfg.task.name}", unit="ep") as bar:
        while finished < cfg.episodes:
            frames.append(tile_views(env.render()[:shown].numpy()))
            steps = env.episode_step.copy()
            obs, _, terminated, truncated, info = env.step(env.expert(obs))
            done = (terminated | truncated).numpy()
            successes += info["success"].numpy()[done].tolist()
            lengths += (steps[done] + 1).tolist()
            finished += int(done.sum())
            bar.update(int(done.sum()))
    wall = time.perf_counter() - start
    fps = 1.0 / env.dt
    env.close()
    stats = {
        "task": cfg.task.name,
        "episodes": finished,
        "expert_success_rate": float(np.mean(successes)),
        "mean_episode_length": float(np.mean(lengths)),
        "wall_time_s": round(wall, 2),
    }
    return stats, frames, fps


def run_pipeline(overrides: list[str]) -> dict:
    cfg = load_config(overrides)
    out = Path(cfg.out)
    stats, frames, fps = run_expert(cfg)
    video = write_mp4(out / f"{cfg.task.name}_expert.mp4", frames, fps)
    bench = bench_sim(cfg.task.name, cfg.bench.num_envs, cfg.bench.steps, cfg.bench.rounds, cfg.seed)
    report = {**stats, "video": str(video), "bench_sim": bench}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(bench))
    print(f"expert success {stats['expert_success_rate']:.1%} over {stats['episodes']} episodes; video {video}")
    return report
