"""``robo-train``: PPO (rsl-rl-lib) on one sim task, its reward shaped by a potential, configured by Hydra.

    robo-train task=push_cube reward=dense                              # the hand-written dense reward
    robo-train task=push_cube reward=sparse shaping=pbrs                # sparse + PBRS(the simulator's progress)
    robo-train task=push_cube reward=prm shaping=pbrs reward.model=DIR shaping.distill.demos=[demos.h5]
    robo-train resume=runs/train/push_cube/<run>                        # continue a killed run
    robo-train -m seed=0,1,2 shaping=none,pbrs                          # a sweep

The story: check the config → make the batched env → wrap its reward (PBRS or direct, with a
potential) → present it to rsl-rl → learn in chunks (after each: history, learning curve, reward-hacking
watch, an atomic checkpoint and the resumable state) → save ``model_final.pt``, ``train_summary.json``,
``learning_curve.png`` and an eval video with Φ drawn under the cameras. TensorBoard events (every raw
reward term, the shaping term and Φ per step and summed per episode) land next to them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rsl_rl.runners import OnPolicyRunner
from rsl_rl.utils.log_writer import LogWriter

import sim
from robo_reward import distributed, runs
from robo_reward.app import UsageError, compose_config, discard_empty_run, guarded, hydra_app
from robo_reward.config import task_config
from robo_reward.distributed import Ranks
from robo_reward.rl import EpisodeLog, RslRlVecEnv
from robo_reward.rl.checkpoint import STATE_FILE, TrainState, resume, save_runner_checkpoint
from robo_reward.rl.curves import plot_learning_curves
from robo_reward.rl.warm_start import (
    HeldActor,
    WarmStartConfig,
    clone_actor,
    demo_pairs,
    hold_normalizer,
    start_normalizer,
)
from robo_reward.rl.watch import RewardHackingWatch
from robo_reward.shaping import ShapedEnv, build_potential
from sim.env import REWARD_MODES

CHECKPOINT = "model_final.pt"
SUMMARY = "train_summary.json"
CURVE = "learning_curve.png"
VIDEO = "eval.mp4"
SHAPING_MODES = ("none", "pbrs", "direct")
POTENTIALS = ("privileged", "model", "distilled")


class TrainConfigError(UsageError):
    """A bad configuration or input, found before any training: reported as one line, exit code 2."""


def check_config(cfg: DictConfig) -> None:
    """Refuse what cannot work before any env is built or file written."""
    if cfg.task.name not in sim.TASKS:
        raise TrainConfigError(f"task={cfg.task.name}: unknown task; known: {', '.join(sorted(sim.TASKS))}")
    for key in ("num_envs", "iterations", "chunk_iterations", "torch_threads", "physics_threads"):
        value = cfg.get(key)
        if key == "physics_threads" and value is None:  # every core
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TrainConfigError(f"{key}={value}: must be a positive integer")
    budget = cfg.max_wall_s
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0):
        raise TrainConfigError(f"max_wall_s={budget}: must be a positive number of seconds, or null")
    if cfg.task_reward not in REWARD_MODES:
        raise TrainConfigError(f"task_reward={cfg.task_reward}: must be one of {', '.join(REWARD_MODES)}")
    check_warm_start(cfg)
    mode = cfg.shaping.mode
    if mode not in SHAPING_MODES:
        raise TrainConfigError(f"shaping.mode={mode}: must be one of {', '.join(SHAPING_MODES)}")
    if mode == "none":
        return
    gamma = float(cfg.algo.algorithm.gamma)
    if mode == "pbrs" and abs(float(cfg.shaping.gamma) - gamma) > 1e-12:
        raise TrainConfigError(
            f"shaping.gamma={cfg.shaping.gamma} differs from the learner's algo.algorithm.gamma={gamma}: "
            "PBRS leaves the optimal policy unchanged only with the learner's gamma"
        )
    if cfg.shaping.potential not in POTENTIALS:
        raise TrainConfigError(f"shaping.potential={cfg.shaping.potential}: must be one of {', '.join(POTENTIALS)}")
    if cfg.shaping.potential != "privileged" and not cfg.reward.model:
        raise TrainConfigError(
            f"reward={cfg.reward.name} shaping.potential={cfg.shaping.potential} needs a trained reward model: "
            "reward.model=DIR (robo-train-reward writes one)"
        )
    if cfg.reward.model and not Path(cfg.reward.model).is_dir():
        raise TrainConfigError(f"reward.model={cfg.reward.model}: no such folder")
    if cfg.shaping.potential == "distilled":
        for demo in cfg.shaping.distill.demos:
            if not Path(demo).is_file():
                raise TrainConfigError(f"shaping.distill.demos: {demo}: no such file")
        if not cfg.shaping.distill.demos:
            raise TrainConfigError(
                "shaping.potential=distilled needs demo files labelled by the reward model: "
                "shaping.distill.demos=[demos.h5] (robo-reward label demos.h5 --model DIR)"
            )


def check_warm_start(cfg: DictConfig) -> None:
    warm = cfg.get("warm_start")
    if not warm or not warm.demos:
        return
    for demo in warm.demos:
        if not Path(demo).is_file():
            raise TrainConfigError(f"warm_start.demos: {demo}: no such file")
    for key in ("steps", "batch_size", "critic_iterations"):
        value = warm.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "batch_size" else 0):
            raise TrainConfigError(f"warm_start.{key}={value}: must be an integer >= {1 if key == 'batch_size' else 0}")
    for key in ("lr", "std"):
        value = warm.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise TrainConfigError(f"warm_start.{key}={value}: must be a positive number")


def warm_start_config(cfg: DictConfig) -> WarmStartConfig | None:
    warm = cfg.get("warm_start")
    if not warm or not warm.demos:
        return None
    return WarmStartConfig(demos=list(warm.demos), steps=int(warm.steps), lr=float(warm.lr),
                           batch_size=int(warm.batch_size), std=float(warm.std),
                           critic_iterations=int(warm.critic_iterations))  # fmt: skip


def make_env(cfg: DictConfig, render_size: tuple[int, int] = (64, 64), cameras=None, num_envs: int | None = None):
    return sim.make(
        cfg.task.name,
        num_envs=num_envs or cfg.num_envs,
        device=cfg.device,
        seed=cfg.seed,
        reward=cfg.task_reward,
        cameras=cameras,
        render_size=render_size,
        config=task_config(cfg.task),
        num_threads=cfg.get("physics_threads"),
    )


def load_model(cfg: DictConfig):
    """The reward model Φ comes from (``reward.model``), or None for the privileged potential."""
    if cfg.shaping.mode == "none" or cfg.shaping.potential == "privileged":
        return None
    from robo_reward.models import load_reward_model

    return load_reward_model(cfg.reward.model, cameras=sim.TASKS[cfg.task.name].cameras)


def wrap_reward(env, cfg: DictConfig, model):
    """The env the learner sees: the task reward, plus the shaping term of ``cfg.shaping`` if any."""
    shaping = cfg.shaping
    if shaping.mode == "none":
        return env, None
    distill = shaping.get("distill") or {}
    potential = build_potential(
        shaping.potential,
        env,
        model_dir=cfg.reward.model,
        demos=list(distill.get("demos", [])),
        label_name=Path(cfg.reward.model).resolve().name if cfg.reward.model else cfg.reward.name,
    )
    refresh = int(distill.get("refresh_every", 0)) if shaping.potential == "distilled" else 0
    shaped = ShapedEnv(
        env,
        potential,
        mode=shaping.mode,
        gamma=float(shaping.gamma),
        learner_gamma=float(cfg.algo.algorithm.gamma),
        scale=float(shaping.scale),
        refresh_every=refresh,
        refresh_model=model if refresh else None,
        refresh_envs=int(distill.get("refresh_envs", 0)),
        refresh_steps=int(distill.get("refresh_steps", 0)),
    )
    return shaped, potential


# keys a resumed run may change: how long it runs, how it reports, where it computes
RESUMABLE_KEYS = ("iterations", "resume", "max_wall_s", "progress_bar", "eval_video", "keep_checkpoints",
                  "chunk_iterations", "summary_iterations", "device", "torch_threads", "physics_threads")  # fmt: skip


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The config that shapes the policy, and fingerprints of the reward model and demos it reads."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in RESUMABLE_KEYS:
        config.pop(key, None)
    config.get("reward", {}).pop("model", None)  # a path: its content is fingerprinted instead
    config.get("shaping", {}).get("distill", {}).pop("demos", None)
    config.get("warm_start", {}).pop("demos", None)
    inputs = {"reward.model": cfg.reward.model}
    warm = cfg.get("warm_start")
    if warm and warm.demos:
        inputs.update({f"warm_start.demos[{i}]": path for i, path in enumerate(warm.demos)})
    if cfg.shaping.mode != "none" and cfg.shaping.potential == "distilled":
        inputs.update({f"shaping.distill.demos[{i}]": path for i, path in enumerate(cfg.shaping.distill.demos)})
    return runs.identity(config, inputs)


def multi_gpu(cfg: DictConfig, ranks: Ranks) -> DictConfig:
    """Under ``torchrun --nproc_per_node=N``: rsl-rl-lib's multi-GPU mode (it reads RANK, LOCAL_RANK and
    WORLD_SIZE itself, joins an NCCL group and averages gradients). Each rank gets its own GPU
    (``cuda:<local rank>``) and its own env seed (``seed + rank``); ``num_envs`` is per rank. One process:
    ``cfg`` unchanged."""
    if not ranks.distributed:
        return cfg
    if not str(cfg.device).startswith("cuda"):
        raise TrainConfigError(f"device={cfg.device}: rsl-rl-lib's multi-GPU training (torchrun with "
                               f"{ranks.world_size} ranks) needs device=cuda; on CPUs run one process")  # fmt: skip
    cfg = cfg.copy()
    cfg.device = f"cuda:{ranks.local_rank}"
    cfg.seed = int(cfg.seed) + ranks.rank
    return cfg


def train(cfg: DictConfig, run_dir: Path, ranks: Ranks | None = None) -> dict[str, Any]:
    """Train a policy as ``cfg`` says, writing checkpoints, curves and the summary into ``run_dir`` (rank 0
    alone writes under torchrun)."""
    ranks = ranks or Ranks()
    check_config(cfg)
    ident = run_identity(cfg)  # the config as given: every rank's run is the same run
    cfg = multi_gpu(cfg, ranks)
    if cfg.resume:
        runs.check_same_run(run_dir, ident, "a resumed run keeps its config and inputs (start a new run instead)")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.torch_threads)
    model = load_model(cfg)
    if model is None:
        env = make_env(cfg)
    else:  # the env renders what the model was trained on (Φ itself, or the distilled potential's refreshes)
        env = make_env(cfg, render_size=(model.image_size, model.image_size), cameras=tuple(model.cameras))
    warm = None if cfg.resume else warm_start_config(cfg)
    try:
        learner_env, potential = wrap_reward(env, cfg, model)
        pairs = demo_pairs(warm.demos, cfg.task.name, env.obs_dim, env.act_dim) if warm else None
    except Exception:
        env.close()
        raise
    if ranks.is_main:
        runs.save(run_dir, ident)  # after the model and env were accepted: a refused run writes nothing
    vec_env = RslRlVecEnv(learner_env)
    train_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    runner = None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # rsl-rl prints its config; the progress bar says enough
            runner = Runner(vec_env, train_cfg, log_dir=str(run_dir), device=cfg.device)
        runner.add_git_repo_to_log(__file__)  # the run dir records this repo's commit and diff
        state = resume_into(runner, vec_env, run_dir) if cfg.resume else TrainState()
        if warm is not None:
            state.warm_start = clone_actor(runner.alg.actor, *pairs, warm, seed=int(cfg.seed))
            start_normalizer(runner.alg.critic, pairs[0])
        elif state.warm_start is not None:  # a resumed warm-started run: its actor's normaliser stays held
            hold_normalizer(runner.alg.actor)
        watch = RewardHackingWatch()
        for row in state.history:
            watch.update_from_row(row)
        learn(cfg, runner, vec_env, state, watch, run_dir, write=ranks.is_main)
        video = None
        if ranks.is_main:
            save_runner_checkpoint(runner, run_dir / CHECKPOINT, infos={"config": config})
            if cfg.eval_video.steps > 0:
                video = film_policy(cfg, runner, run_dir / VIDEO, potential)
    finally:
        if runner is not None:
            runner.close_writer()
        vec_env.close()
    summary = summarise(cfg, config, state, watch, video)
    summary["potential_fit"] = getattr(potential, "fit_report", None)  # the distilled Φ against held-out demo labels
    summary["world_size"] = ranks.world_size
    if ranks.is_main:
        (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class Runner(OnPolicyRunner):
    """rsl-rl's runner minus its own checkpoints (written inside ``learn``, not atomically, numbered one
    short): the trainer writes them itself after every chunk, together with the state that resumes them.

    And one TensorBoard writer for the whole run: rsl-rl's ``learn`` opens a new event file (and runs git
    for its record of the code) at every call, which is every chunk here — ~140 event files and as many
    writer threads in a 20-minute run."""

    def save(self, path: str, infos: dict | None = None) -> None:
        return None

    def learn(self, num_learning_iterations: int, init_at_random_ep_len: bool = False) -> None:
        logger = self.logger
        if logger.writer is None or isinstance(logger.writer, LogWriter):  # first chunk, or a writer rsl-rl stops
            return super().learn(num_learning_iterations, init_at_random_ep_len)
        logger.init_logging_writer = lambda: None  # later chunks: keep writing into it
        try:
            return super().learn(num_learning_iterations, init_at_random_ep_len)
        finally:
            del logger.init_logging_writer

    def close_writer(self) -> None:
        writer, self.logger.writer = self.logger.writer, None
        if writer is not None and hasattr(writer, "close"):
            writer.close()


def resume_into(runner: OnPolicyRunner, vec_env: RslRlVecEnv, run_dir: Path) -> TrainState:
    """Load the trainer state of ``run_dir`` and the checkpoint it goes with; the step counter continues."""
    state = resume(runner, run_dir)
    vec_env.num_steps = state.env_steps // vec_env.num_envs
    vec_env.episodes = state.episodes
    return state


def learn(cfg, runner, vec_env: RslRlVecEnv, state: TrainState, watch: RewardHackingWatch, run_dir: Path,
          write: bool = True) -> None:  # fmt: skip
    """PPO in chunks of ``cfg.chunk_iterations``; after each chunk the run folder is resumable (when
    ``write``: rank 0 of a multi-GPU run)."""
    from tqdm import tqdm

    from robo_reward.progress import progress_bar

    steps_per_it = cfg.algo.num_steps_per_env * cfg.num_envs
    # a warm-started run's first iterations train the critic alone (resumed runs included)
    held = int(cfg.warm_start.critic_iterations) if state.warm_start is not None else 0
    done_before = state.iterations_done
    budget = cfg.max_wall_s
    bar = progress_bar(total=cfg.iterations, initial=done_before, desc=f"ppo {cfg.task.name}", unit="it",
                       disable=not cfg.progress_bar, mininterval=2.0)  # fmt: skip
    with bar:
        while state.iterations_done < cfg.iterations and not (budget and state.wall_s >= budget):
            chunk = min(cfg.chunk_iterations, cfg.iterations - state.iterations_done)
            holding = state.iterations_done < held
            if holding:  # the critic-only iterations are a chunk of their own
                chunk = min(chunk, held - state.iterations_done)
            seen = len(vec_env.episodes)
            start = time.perf_counter()
            # a fresh run starts every env at a random step of its first episode, so episodes end spread
            # over the iterations instead of all at once (every iteration then has episodes to report)
            spread = state.iterations_done == 0
            with contextlib.redirect_stdout(io.StringIO()), HeldActor(runner.alg) if holding else nullcontext():
                runner.learn(num_learning_iterations=chunk, init_at_random_ep_len=spread)  # (stdout: rsl-rl's report)
            runner.current_learning_iteration = state.iterations_done + chunk  # rsl-rl leaves it one short
            elapsed = time.perf_counter() - start
            rows = iteration_rows(vec_env.episodes, seen, state, chunk, cfg.algo.num_steps_per_env, cfg.num_envs,
                                  elapsed)  # fmt: skip
            state.history.extend(rows)
            state.iterations_done += chunk
            state.env_steps += chunk * steps_per_it
            state.wall_s += elapsed
            for row in rows:
                flagged_before = watch.summary()["flagged"]
                warning = watch.update_from_row(row)
                if warning and (not flagged_before or row["iteration"] % 50 == 0):
                    tqdm.write(f"warning: {warning}", file=sys.stderr)
            state.episodes = vec_env.episodes
            if write:
                save_runner_checkpoint(runner, run_dir / f"model_{state.iterations_done}.pt", infos=None)
                state.save(run_dir)
                prune_checkpoints(run_dir, keep=cfg.keep_checkpoints)
                plot_learning_curves(state.history, run_dir / CURVE, title=run_title(cfg))
            last = rows[-1]
            bar.set_postfix(success=last["success_rate"], steps=state.env_steps, refresh=False)
            bar.update(chunk)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` ``model_<it>.pt`` (the state file names the one resume needs)."""
    numbered = sorted((int(m.group(1)), p) for p in run_dir.glob("model_*.pt")
                      if (m := re.fullmatch(r"model_(\d+)\.pt", p.name)))  # fmt: skip
    for _, path in numbered[:-keep]:
        path.unlink(missing_ok=True)


def iteration_rows(episodes: EpisodeLog, seen: int, state: TrainState, chunk: int, steps_per_env: int,
                   num_envs: int, elapsed: float) -> list[dict[str, Any]]:  # fmt: skip
    """History rows of the chunk just learned: the episodes that ended in each of its iterations."""
    steps_per_it = steps_per_env * num_envs
    rows = iteration_history(episodes, steps_per_env, state.iterations_done + chunk, start=seen)
    rows = rows[state.iterations_done :]
    for k, row in enumerate(rows, start=1):
        row["env_steps"] = state.env_steps + k * steps_per_it
        row["wall_s"] = round(state.wall_s + elapsed * k / chunk, 3)
    return rows


def iteration_history(episodes: EpisodeLog, steps_per_iteration: int, iterations: int,
                      start: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """Per PPO iteration: the episodes that ended during its rollout, their mean return and success rate.

    ``steps_per_iteration`` counts adapter steps (``num_steps_per_env``); ``start`` skips the first
    episodes of the log. ``mean_return`` (what the learner was given, shaping included),
    ``task_return`` (the task reward alone, when the env reports a ``task`` term) and
    ``success_rate`` are ``None`` for an iteration in which no episode ended.
    """
    rows = [{"iteration": it, "episodes": 0, "successes": 0, "return_sum": 0.0, "task_sum": 0.0}
            for it in range(iterations)]  # fmt: skip
    task = episodes.term_sums.get("task")
    for k in range(start, len(episodes)):
        row = rows[(episodes.end_step[k] - 1) // steps_per_iteration]
        row["episodes"] += 1
        row["successes"] += int(episodes.success[k])
        row["return_sum"] += episodes.returns[k]
        row["task_sum"] += task[k] if task is not None else episodes.returns[k]
    for row in rows:
        count, return_sum, task_sum = row["episodes"], row.pop("return_sum"), row.pop("task_sum")
        row["mean_return"] = return_sum / count if count else None
        row["task_return"] = task_sum / count if count else None
        row["success_rate"] = row["successes"] / count if count else None
    return rows


def film_policy(cfg: DictConfig, runner: OnPolicyRunner, path: Path, potential) -> dict:
    """An mp4 of the trained policy (deterministic) from every camera at 256 px, Φ drawn underneath."""
    from robo_reward.rl.eval_video import record_eval_video

    policy = runner.get_inference_policy(device=cfg.device)
    env = make_env(cfg, render_size=(cfg.eval_video.view_px, cfg.eval_video.view_px), num_envs=cfg.eval_video.envs)
    try:
        from tensordict import TensorDict

        def act(obs: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return policy(TensorDict({"policy": obs}, batch_size=[obs.shape[0]]))

        phi = None
        if potential is not None and hasattr(potential, "current") and cfg.shaping.potential != "model":
            phi = potential.current
        return record_eval_video(env, act, phi, path, steps=cfg.eval_video.steps, envs_shown=cfg.eval_video.envs,
                                 view_px=cfg.eval_video.view_px)  # fmt: skip
    finally:
        env.close()


def run_title(cfg: DictConfig) -> str:
    shaping = "" if cfg.shaping.mode == "none" else f" + {cfg.shaping.mode}({cfg.shaping.potential})"
    return f"{cfg.task.name}: {cfg.task_reward}{shaping}, seed {cfg.seed}"


def summarise(cfg: DictConfig, config: dict, state: TrainState, watch: RewardHackingWatch, video) -> dict:
    from robo_reward.export import REPO, git_state

    commit, dirty = git_state(REPO)
    history = state.history
    last = history[-cfg.summary_iterations :]
    last_episodes = sum(row["episodes"] for row in last)
    last_successes = sum(row["successes"] for row in last)
    return {
        "task": cfg.task.name,
        "task_reward": cfg.task_reward,
        "reward": cfg.reward.name,
        "shaping": cfg.shaping.mode,
        "potential": cfg.shaping.get("potential") if cfg.shaping.mode != "none" else None,
        "task_config": task_config(cfg.task),
        "num_envs": cfg.num_envs,
        "seed": cfg.seed,
        "iterations": state.iterations_done,
        "env_steps": state.env_steps,
        "wall_time_s": round(state.wall_s, 3),
        "warm_start": state.warm_start,
        "env_steps_per_s": round(state.env_steps / max(state.wall_s, 1e-9), 1),
        "episodes": sum(row["episodes"] for row in history),
        "summary_iterations": len(last),
        "success_rate_last": last_successes / last_episodes if last_episodes else None,
        "env_steps_to_90": steps_to(history, 0.9, "env_steps", cfg.num_envs),
        "wall_s_to_90": steps_to(history, 0.9, "wall_s", cfg.num_envs),
        "reward_hacking": watch.summary(),
        "checkpoint": CHECKPOINT,
        "code": {"commit": commit, "dirty": dirty},  # what `robo-reward export` writes into spec.json
        "learning_curve": CURVE,
        "video": video["out"] if video else None,
        "config": config,
        "history": history,
    }


def steps_to(history: list[dict], rate: float, key: str, min_episodes: int) -> float | None:
    """``key`` at the first iteration where the latest ≥ ``min_episodes`` finished episodes succeed ≥ ``rate``.

    The episodes are those of the fewest trailing iterations that hold ``min_episodes`` of them (a full
    batch of envs by default), so one lucky episode early on does not count as reaching the rate.
    """
    for k in range(len(history)):
        count = successes = 0
        for row in reversed(history[: k + 1]):
            count, successes = count + row["episodes"], successes + row["successes"]
            if count >= min_episodes:
                break
        if count >= min_episodes and successes / count >= rate:
            return history[k][key]
    return None


def resumed_config(cfg: DictConfig) -> DictConfig:
    """A resumed run's config: the overrides it was started with, then this command's (``resume=RUN``
    alone continues the run as it was; a changed key that shapes the policy is then refused)."""
    run_dir = Path(cfg.resume)
    if not run_dir.is_dir():
        raise TrainConfigError(f"resume={run_dir}: no such run folder")
    recorded = run_dir / ".hydra" / "overrides.yaml"
    if not recorded.is_file():
        return cfg
    started = [o for o in OmegaConf.load(recorded) if not str(o).startswith("resume=")]
    now = list(HydraConfig.get().overrides.task)
    return compose_config("train", [*started, *now])


def job(cfg: DictConfig) -> None:
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)  # a resumed run leaves this one empty: removed
    if cfg.resume:
        with guarded("robo-train", on_error=lambda: discard_empty_run(hydra_dir)):
            cfg = resumed_config(cfg)
    run_dir = Path(cfg.resume) if cfg.resume else hydra_dir

    def kept() -> str:
        if (run_dir / STATE_FILE).is_file():
            return f"the run is resumable: robo-train resume={run_dir}"
        discard_empty_run(hydra_dir)
        return "no checkpoint was written yet"

    ranks = distributed.launched()  # rsl-rl-lib joins the process group itself (multi_gpu)
    with guarded("robo-train", kept, on_error=lambda: discard_empty_run(hydra_dir)):
        summary = train(cfg, run_dir, ranks)
    discard_empty_run(hydra_dir)
    if not ranks.is_main:
        return
    print(
        f"trained {summary['task']} for {summary['iterations']} iterations ({summary['env_steps']} env steps, "
        f"{summary['env_steps_per_s']:.0f} steps/s); success over the last {summary['summary_iterations']} "
        f"iterations: {summary['success_rate_last']}; run folder {run_dir} ({CHECKPOINT}, {SUMMARY})"
    )


main = hydra_app("robo-train", "train", job, torchrun_needs=("hydra.run.dir", "resume"))


if __name__ == "__main__":
    main()
