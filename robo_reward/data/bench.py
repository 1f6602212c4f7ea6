"""``robo-reward bench record``: recording throughput vs rendering alone, in one run."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import sim
from robo_reward.data.reader import DemoReader
from robo_reward.data.record import RecordConfig, record
from sim.timing import median_ratio


def _record_once(cfg: RecordConfig) -> tuple[float, int, int, int]:
    """Record; return (seconds, frames written, image bytes stored, file bytes)."""
    start = time.perf_counter()
    record(cfg)
    seconds = time.perf_counter() - start
    cameras = cfg.cameras
    with DemoReader(cfg.out) as reader:
        frames = sum(reader.num_samples(i) for i in range(len(reader))) * len(cameras)
        stored = sum(
            reader.group(i)[f"obs/{cam}_rgb"].id.get_storage_size() for i in range(len(reader)) for cam in cameras
        )
    return seconds, frames, stored, Path(cfg.out).stat().st_size


def _render_only(cfg: RecordConfig, frames: int) -> tuple[float, int]:
    """(seconds, images) to make the same env and step it with the expert, rendering, for ``frames`` images."""
    steps = -(-frames // (len(cfg.cameras) * cfg.num_envs))
    start = time.perf_counter()
    env = sim.make(cfg.task, num_envs=cfg.num_envs, seed=cfg.seed, cameras=cfg.cameras, render_size=(cfg.res, cfg.res))
    obs = env.observation
    for _ in range(steps):
        env.render()
        obs, *_ = env.step(env.expert(obs))
    env.close()
    return time.perf_counter() - start, steps * cfg.num_envs * len(cfg.cameras)


def bench_record(
    task: str = "push_cube",
    num_envs: int = 16,
    num_demos: int = 32,
    cameras=("front", "wrist"),
    res: int = 64,
    rounds: int = 3,
) -> dict:
    """frames/s written by ``record`` vs frames/s of the same env, cameras and expert with no writing.

    A frame is one camera image. Both sides make the env, step it with the expert and render every
    step; the recorder also buffers, compresses and writes. Rounds alternate; the ratio is the median
    of per-round ratios.
    """
    record_rates, render_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RecordConfig(task=task, num_demos=num_demos, out=Path(tmp) / "bench.h5", cameras=tuple(cameras),
                           res=res, num_envs=num_envs, progress_bar=False)  # fmt: skip
        for _ in range(rounds):
            seconds, frames, stored, size = _record_once(cfg)
            record_rates.append(frames / seconds)
            render_seconds, rendered = _render_only(cfg, frames)
            render_rates.append(rendered / render_seconds)
    return {
        "frames_per_s": round(statistics.median(record_rates), 1),
        "render_frames_per_s": round(statistics.median(render_rates), 1),
        "ratio": round(median_ratio(record_rates, render_rates), 3),
        "bytes_per_frame": round(stored / frames, 1),
        "file_bytes_per_frame": round(size / frames, 1),
        "task": task,
        "cameras": list(cameras),
        "res": res,
        "episodes": num_demos,
    }
