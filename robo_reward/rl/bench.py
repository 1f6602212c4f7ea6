"""``robo-reward bench learn``: what shaping buys, measured — success vs env steps and wall time per reward.

Variants (one ``robo-train`` config each, trained under the same wall-clock budget, in one run):

- ``sparse``: the task's success reward alone (what shaping must beat);
- ``dense``: the task's hand-written dense reward;
- ``pbrs_privileged``: sparse + PBRS with the simulator's own progress as Φ (the ideal potential);
- ``pbrs_prm``: sparse + PBRS with a process reward model trained here from recorded demo video,
  distilled into a state network (the potential the stack is for);
- ``direct_prm``: sparse + the same progress used directly as reward (the "semantic trap");
- ``pbrs_prm_rendered`` (only when asked for): ``pbrs_prm`` with the PRM scoring frames rendered every
  step instead of the distilled network — its env steps per second are what distilling buys.

The PRM is trained once before the runs (record → train → label), outside the budget; its setup time is
reported. ``jobs`` > 1 trains that many runs at a time, each in its own process with its share of the
cores (one PPO run keeps ~1 of 2 cores busy: its update is one thread; the README gives the env-steps/s
seen each way); every run's budget is its own wall clock. Per run the benchmark reports
the success rate of its final iterations and the env steps and wall time at which its episodes first
succeed ≥ 90 % (over three consecutive iterations), else null.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from robo_reward.rl.curves import plot_comparison
from sim.physics import usable_cores

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
VARIANTS: dict[str, list[str]] = {
    "sparse": ["reward=sparse", "shaping=none"],
    "dense": ["reward=dense", "shaping=none"],
    "pbrs_privileged": ["reward=sparse", "shaping=pbrs", "shaping.potential=privileged"],
    "pbrs_prm": ["reward=prm", "shaping=pbrs"],
    "direct_prm": ["reward=prm", "shaping=direct"],
    # not in the default set: the same PRM scored on frames rendered every step (what distilling saves)
    "pbrs_prm_rendered": ["reward=prm", "shaping=pbrs", "shaping.potential=model"],
}
DEFAULT_VARIANTS = ("sparse", "dense", "pbrs_privileged", "pbrs_prm", "direct_prm")
NEEDS_MODEL = ("pbrs_prm", "direct_prm", "pbrs_prm_rendered")


def prepare_reward_model(task: str, out: Path, seed: int, num_demos: int = 64, steps: int = 800) -> dict[str, Any]:
    """Record demos with the scripted expert (20 % spoiled), train the PRM on them and label them with it."""
    from robo_reward.data.record import RecordConfig, record
    from robo_reward.label import label
    from robo_reward.models.prm_train import PRMTrainConfig, train_prm

    start = time.perf_counter()
    demos = out / "demos.h5"
    cameras = ["front", "wrist"]
    record(RecordConfig(task=task, num_demos=num_demos, out=demos, cameras=tuple(cameras), res=64,
                        failure_rate=0.2, seed=seed + 500, progress_bar=False))  # fmt: skip
    model, _ = train_prm([demos], out / "prm", {"cameras": cameras}, PRMTrainConfig(steps=steps, seed=seed))
    label(demos, model, "prm")
    return {"model": str(out / "prm"), "demos": str(demos), "setup_s": round(time.perf_counter() - start, 1)}


def run_config(overrides: list[str]):
    import robo_reward.config  # noqa: F401  (registers the task/<name> configs)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="train", overrides=overrides)


def train_run(overrides: list[str], run_dir: str) -> dict[str, Any]:
    """One bench run (also the body of a worker process): train, return its summary."""
    from robo_reward.train import train

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return train(run_config(overrides), Path(run_dir))


def bench_learn(task: str = "push_cube", budget_min: float = 10.0, seeds: int = 3, variants: list[str] | None = None,
                num_envs: int = 128, out: str | Path = "runs/bench_learn", model: str | None = None,
                demos: str | None = None, jobs: int = 1, warm_start: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Train every variant × seed for ``budget_min`` minutes of training time, ``jobs`` runs at a time;
    return the JSON report. ``warm_start``: a demo file of the task; every run then starts from the
    same behaviour cloning of it (``robo-train warm_start.demos``), so the variants stay comparable."""
    names = variants or list(DEFAULT_VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; available: {', '.join(VARIANTS)}")
    if warm_start is not None:  # checked here, before the reward model's setup minutes, not in the first run
        from robo_reward.data.reader import DemoReader

        warm_start = str(Path(warm_start).resolve())
        if not Path(warm_start).is_file():
            raise ValueError(f"{warm_start}: no such demo file (--warm-start)")
        with DemoReader(warm_start) as reader:
            if reader.task != task:
                raise ValueError(f"{warm_start}: demos of task {reader.task!r}, not {task!r} (--warm-start)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, Any] = {}
    if any(name in NEEDS_MODEL for name in names):
        if model and demos:
            prepared = {"model": model, "demos": demos, "setup_s": 0.0}
        else:
            prepared = prepare_reward_model(task, out, seed=0)
    cores = usable_cores()
    runs = []
    for name in names:
        for seed in range(seeds):
            overrides = [f"task={task}", *VARIANTS[name], f"seed={seed}", f"num_envs={num_envs}",
                         "iterations=100000", f"max_wall_s={budget_min * 60}", "eval_video.steps=0",
                         "progress_bar=false"]  # fmt: skip
            if jobs > 1:
                overrides.append(f"physics_threads={max(1, cores // jobs)}")
            if warm_start is not None:
                overrides.append(f"warm_start.demos=[{warm_start}]")
            if name in NEEDS_MODEL:
                overrides += [f"reward.model={prepared['model']}", f"shaping.distill.demos=[{prepared['demos']}]"]
            runs.append((name, seed, overrides, str(out / name / f"seed{seed}")))
    results, histories = [], {}

    def collect(name: str, seed: int, summary: dict[str, Any]) -> None:
        results.append({
            "variant": name,
            "seed": seed,
            "success_rate": summary["success_rate_last"],
            "env_steps_to_90": summary["env_steps_to_90"],
            "wall_s_to_90": summary["wall_s_to_90"],
            "env_steps": summary["env_steps"],
            "wall_s": summary["wall_time_s"],
            "env_steps_per_s": summary["env_steps_per_s"],
            "reward_hacking": summary["reward_hacking"]["flagged"],
        })  # fmt: skip
        histories[(name, seed)] = summary["history"]
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    if jobs <= 1:
        for name, seed, overrides, run_dir in runs:
            collect(name, seed, train_run(overrides, run_dir))
    else:  # fresh interpreters (spawn): no forked copy of this process's threads and OpenMP state
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train_run, overrides, run_dir) for _, _, overrides, run_dir in runs]
            for (name, seed, _, _), future in zip(runs, futures, strict=True):
                collect(name, seed, future.result())
    plot = out / "bench_learn.png"
    plot_comparison(histories, plot)
    report = {"task": task, "budget_min": budget_min, "num_envs": num_envs, "jobs": jobs, "warm_start": warm_start,
              "results": results,
              "plot": str(plot),
              "reward_model_setup_s": prepared.get("setup_s")}  # fmt: skip
    (out / "bench_learn.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
