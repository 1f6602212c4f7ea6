"""What domain randomisation costs: env steps/s and rendered frames/s with it on vs off, in one run.

    MUJOCO_GL=egl python scripts/bench_randomize.py --task push_cube --num-envs 64 --rounds 5

Both envs step the same random actions (auto-resets included, so the per-reset draws are paid) and
are measured in alternating rounds, as ``robo-reward bench sim`` does; the ratio is the median of the
per-round ratios. ``apply_us`` is the time to write one env's draw into a model, beside ``env_step_us``,
one env's share of a step with randomisation off: what rewriting shared models before every env's step
(the alternative to per-env model copies) would add per env and step. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

import sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="push_cube")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    envs = {
        "off": sim.make(args.task, num_envs=args.num_envs, seed=0),
        "on": sim.make(args.task, num_envs=args.num_envs, seed=0, config={"randomize": {"enabled": True}}),
    }
    gen = torch.Generator().manual_seed(0)
    actions = torch.rand(args.steps, args.num_envs, envs["off"].act_dim, generator=gen) * 2 - 1

    def steps_per_s(env: sim.BatchedEnv) -> float:
        start = time.perf_counter()
        for act in actions:
            env.step(act)
        return args.num_envs * args.steps / (time.perf_counter() - start)

    def frames_per_s(env: sim.BatchedEnv) -> float:
        start = time.perf_counter()
        frames = env.render()
        return frames.shape[0] * frames.shape[1] / (time.perf_counter() - start)

    def resets_per_s(env: sim.BatchedEnv) -> float:
        start = time.perf_counter()
        env.reset()
        return args.num_envs / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {}
    for env in envs.values():  # warm up threads, caches and the renderers
        steps_per_s(env)
        frames_per_s(env)
    for _ in range(args.rounds):
        for name, env in envs.items():
            for kind, measure in (("steps", steps_per_s), ("frames", frames_per_s), ("resets", resets_per_s)):
                rates.setdefault(f"{kind}_{name}", []).append(measure(env))
    randomizer, model = envs["on"].randomizer, envs["on"].physics.models[0]
    draw = randomizer.draw(np.random.default_rng(0))
    start = time.perf_counter()
    for _ in range(1000):
        randomizer.apply(model, draw)
    apply_us = (time.perf_counter() - start) * 1e3
    for env in envs.values():
        env.close()
    out: dict[str, object] = {"task": args.task, "num_envs": args.num_envs, "rounds": args.rounds}
    for kind in ("steps", "frames", "resets"):
        on, off = rates[f"{kind}_on"], rates[f"{kind}_off"]
        out[f"{kind}_per_s_off"] = round(statistics.median(off), 1)
        out[f"{kind}_per_s_on"] = round(statistics.median(on), 1)
        out[f"{kind}_ratio_on_vs_off"] = round(statistics.median(a / b for a, b in zip(on, off, strict=True)), 3)
    out["apply_us"] = round(apply_us, 1)
    out["env_step_us"] = round(1e6 / out["steps_per_s_off"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
