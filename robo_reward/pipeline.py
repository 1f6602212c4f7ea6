"""``robo-reward pipeline``: the main job, read top to bottom.

film the scripted expert → record demos (with failures) → train a process reward model (PRM) →
label the demos and evaluate it on held-out ones (VOC, success AUC) → distil it into a state
potential and train PPO on the sparse task reward plus PBRS(PRM) → export the policy artifact →
roll the artifact out through onnxruntime → report. Everything lands in ``cfg.out``; ``summary.json``
(``success_rate``, ``voc``, ``wall_s``, ``artifact``) is also printed as the last line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

import sim
from robo_reward.app import UsageError, check_overrides, compose_config, discard_empty_run, guarded, hydra_app
from robo_reward.config import task_config
from robo_reward.data.record import RecordConfig, record
from robo_reward.data.view import view
from robo_reward.label import label
from robo_reward.models.evaluate import evaluate
from robo_reward.models.prm_train import PRMTrainConfig, train_prm
from robo_reward.progress import progress_bar
from robo_reward.video import SUCCESS_COLOUR, TEXT_COLOUR, labelled_tile, write_mp4

SUMMARY = "summary.json"


def load_config(overrides: list[str], name: str = "pipeline") -> DictConfig:
    return compose_config(name, overrides)


def check_config(cfg: DictConfig) -> None:
    """Refuse, before the first stage, what would fail in a later one."""
    if cfg.task.name not in sim.TASKS:
        raise UsageError(f"task={cfg.task.name}: unknown task; known: {', '.join(sorted(sim.TASKS))}")
    positive = {"num_envs": cfg.num_envs, "episodes": cfg.episodes, "video_envs": cfg.video_envs,
                "reward.num_demos": cfg.reward.num_demos, "reward.heldout_demos": cfg.reward.heldout_demos,
                "reward.steps": cfg.reward.steps, "policy.num_envs": cfg.policy.num_envs,
                "policy.rollout_episodes": cfg.policy.rollout_episodes}  # fmt: skip
    for key, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{key}={value}: must be a positive integer")
    if cfg.res < 16:
        raise UsageError(f"res={cfg.res}: must be at least 16 pixels")
    stop = cfg.reward.heldout_stop_after_success
    if stop is not None and (not isinstance(stop, int) or stop < 0):
        raise UsageError(f"reward.heldout_stop_after_success={stop}: must be an integer ≥ 0, or null (time limit)")
    if not 0.0 <= cfg.reward.failure_rate <= 1.0:
        raise UsageError(f"reward.failure_rate={cfg.reward.failure_rate}: must be in [0, 1]")
    if not isinstance(cfg.policy.iterations, int) or cfg.policy.iterations < 0:
        raise UsageError(f"policy.iterations={cfg.policy.iterations}: must be an integer ≥ 0 (0: no policy stage)")
    if cfg.policy.iterations:
        from robo_reward.train import check_config as check_train

        check_overrides("train", list(cfg.policy.overrides))
        check_train(policy_config(cfg, {"model": None, "demos": "demos.h5"}, check_files=False))


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
    ends, wins = np.zeros(cfg.num_envs, dtype=np.int64), np.zeros(cfg.num_envs, dtype=np.int64)
    start = time.perf_counter()
    with progress_bar(total=cfg.episodes, desc=f"expert {cfg.task.name}", unit="ep") as bar:
        while finished < cfg.episodes:
            steps = env.episode_step.copy()
            status = [(f"step {steps[e]} · success {wins[e]}/{ends[e]}", SUCCESS_COLOUR if wins[e] else TEXT_COLOUR)
                      for e in range(shown)]  # fmt: skip
            frames.append(labelled_tile(env.render(range(shown)).numpy(), env.cameras,
                                        [f"env {e}" for e in range(shown)], status))  # fmt: skip
            obs, _, terminated, truncated, info = env.step(env.expert(obs))
            done = (terminated | truncated).numpy()
            successes += info["success"].numpy()[done].tolist()
            ends += done
            wins += done & info["success"].numpy()
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
    """Record → train PRM → label the training and held-out demos → evaluate and film a held-out one."""
    rc = cfg.reward
    common = {"task": cfg.task.name, "cameras": tuple(rc.cameras), "res": cfg.res, "failure_rate": rc.failure_rate,
              "num_envs": cfg.num_envs, "task_config": task_config(cfg.task)}  # fmt: skip
    train, heldout = out / "demos.h5", out / "demos_heldout.h5"
    record(RecordConfig(num_demos=rc.num_demos, out=train, seed=cfg.seed, **common))
    record(RecordConfig(num_demos=rc.heldout_demos, out=heldout, seed=cfg.seed + 1000,
                        stop_after_success=rc.heldout_stop_after_success, **common))  # fmt: skip
    model, summary = train_prm([train], out / "prm", {"cameras": list(rc.cameras)},
                               PRMTrainConfig(steps=rc.steps, seed=cfg.seed))  # fmt: skip
    label(train, model, "prm")  # the distilled potential is fitted to these labels
    label(heldout, model, "prm")
    metrics = evaluate(model, heldout, plot=out / "prm_curves.png")
    video = view(heldout, 0, out / "heldout_demo0_labelled.mp4")
    return {"prm": {**metrics, "train_wall_time_s": summary["train_wall_time_s"], "video": video["out"]},
            "demos": str(train), "model": str(out / "prm")}  # fmt: skip


def policy_config(cfg: DictConfig, reward: dict, check_files: bool = True) -> DictConfig:
    """``robo-train``'s config for the policy stage: the pipeline's task, sparse reward + PBRS(distilled PRM)."""
    pc = cfg.policy
    overrides = [
        "reward=prm",
        f"shaping={pc.shaping}",
        f"reward.model={reward['model']}",
        f"shaping.distill.demos=[{reward['demos']}]",
        f"num_envs={pc.num_envs}",
        f"iterations={pc.iterations}",
        f"seed={cfg.seed}",
        f"eval_video.steps={pc.video_steps}",
        *pc.overrides,
    ]
    train_cfg = load_config(overrides, name="train")
    train_cfg.task = cfg.task  # the layout the demos were recorded with
    if not check_files:  # checked before the stages that write them: only the config's values count
        train_cfg.reward.model = None
        train_cfg.shaping.potential = "privileged" if train_cfg.shaping.mode != "none" else train_cfg.shaping.potential
    return train_cfg


def run_policy_stage(cfg: DictConfig, reward: dict, out: Path) -> dict:
    """PPO with PBRS(PRM) → export the artifact → roll it out through onnxruntime."""
    from robo_reward.export import export_policy
    from robo_reward.rollout import rollout
    from robo_reward.train import train

    run_dir = out / "policy"
    run_dir.mkdir(parents=True, exist_ok=True)
    train_cfg = policy_config(cfg, reward)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(train_cfg))
    summary = train(train_cfg, run_dir)
    artifact = out / "artifact"
    export_policy(run_dir, artifact)
    result = rollout(artifact, episodes=cfg.policy.rollout_episodes, seed=cfg.seed + 2000,
                     video=out / "rollout.mp4")  # fmt: skip
    kept = ("env_steps", "wall_time_s", "success_rate_last", "env_steps_to_90", "reward_hacking", "learning_curve")
    return {
        "train": {key: summary[key] for key in kept},
        "rollout": result,
        "artifact": str(artifact),
    }


def run_pipeline(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stats, frames, fps = run_expert(cfg)
    video = write_mp4(out / f"{cfg.task.name}_expert.mp4", frames, fps)
    reward = run_reward_stage(cfg, out)
    policy = run_policy_stage(cfg, reward, out) if cfg.policy.iterations > 0 else None
    report = {**stats, "video": str(video), "prm": reward["prm"], "policy": policy}
    if cfg.bench.rounds > 0:
        from sim.bench import bench_sim

        report["bench_sim"] = bench_sim(cfg.task.name, cfg.bench.num_envs, cfg.bench.steps, cfg.bench.rounds, cfg.seed)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    prm = reward["prm"]
    print(f"expert success {stats['expert_success_rate']:.1%} over {stats['episodes']} episodes; video {video}")
    print(f"PRM on held-out demos: VOC {prm['voc']:.3f}, success AUC {prm['success_auc']:.3f}")
    summary = {
        "success_rate": policy["rollout"]["success_rate"] if policy else None,
        "voc": prm["voc"],
        "wall_s": round(time.perf_counter() - start, 1),
        "artifact": policy["artifact"] if policy else None,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if policy:
        rate = summary["success_rate"]
        print(f"policy (PBRS with the PRM): rollout success {rate:.1%}; report {out / 'report.json'}")
    print(json.dumps(summary))
    return summary


def job(cfg: DictConfig) -> None:
    out = Path(cfg.out)
    def kept() -> str:
        discard_empty_run(out)
        return f"the finished stages' files are kept in {out}" if out.is_dir() else "nothing was kept"

    with guarded("robo-reward pipeline", kept, on_error=lambda: discard_empty_run(out)):
        run_pipeline(cfg)


main = hydra_app("robo-reward pipeline", "pipeline", job)
