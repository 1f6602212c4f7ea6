"""``robo-reward pipeline``: the main job, read top to bottom.

make the env → film the scripted expert from every task camera → record demos (with failures) →
train a process reward model → label held-out demos with it → evaluate (VOC, success AUC) and film
one labelled demo with its progress curve → benchmark the simulator against its physics bound.
Policy stages (shaped PPO, export, rollout) slot in after the reward model.
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
from robo_reward.data.record import RecordConfig, record
from robo_reward.data.view import view
from robo_reward.label import label
from robo_reward.models.evaluate import evaluate
from robo_reward.models.prm_train import PRMTrainConfig, train_prm
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


def run_reward_stage(cfg: DictConfig, out: Path) -> dict:
    """Record → train PRM → label held-out demos → evaluate and film one of them with its labels."""
    rc = cfg.reward
    common = {"task": cfg.task.name, "cameras": tuple(rc.cameras), "res": cfg.res, "failure_rate": rc.failure_rate,
              "num_envs": cfg.num_envs, "task_config": task_config(cfg.task)}  # fmt: skip
    train, heldout = out / "demos.h5", out / "demos_heldout.h5"
    record(RecordConfig(num_demos=rc.num_demos, out=train, seed=cfg.seed, **common))
    record(RecordConfig(num_demos=rc.heldout_demos, out=heldout, seed=cfg.seed + 1000, **common))
    model, summary = train_prm([train], out / "prm", {"cameras": list(rc.cameras)},
                               PRMTrainConfig(steps=rc.steps, seed=cfg.seed))  # fmt: skip
    label(heldout, model, "prm")
    metrics = evaluate(model, heldout, plot=out / "prm_curves.png")
    video = view(heldout, 0, out / "heldout_demo0_labelled.mp4")
    return {"prm": {**metrics, "train_wall_time_s": summary["train_wall_time_s"], "video": video["out"]}}


def run_pipeline(overrides: list[str]) -> dict:
    cfg = load_config(overrides)
    out = Path(cfg.out)
    stats, frames, fps = run_expert(cfg)
    video = write_mp4(out / f"{cfg.task.name}_expert.mp4", frames, fps)
    reward = run_reward_stage(cfg, out)
    bench = bench_sim(cfg.task.name, cfg.bench.num_envs, cfg.bench.steps, cfg.bench.rounds, cfg.seed)
    report = {**stats, "video": str(video), **reward, "bench_sim": bench}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(bench))
    print(f"expert success {stats['expert_success_rate']:.1%} over {stats['episodes']} episodes; video {video}")
    prm = reward["prm"]
    print(
        f"PRM on held-out demos: VOC {prm['voc']:.3f}, success AUC {prm['success_auc']:.3f}; "
        f"report {out / 'report.json'}"
    )
    return report
