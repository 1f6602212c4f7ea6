"""``robo-reward bench label``: end-to-end labelling vs the model's forward pass, in one run."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from robo_reward.data.reader import DemoReader
from robo_reward.data.record import RecordConfig, record
from robo_reward.label import label
from robo_reward.models import load
from robo_reward.models.prm import PRMConfig, ProgressRewardModel


def bench_label(
    task: str = "push_cube",
    num_demos: int = 200,
    cameras=("front", "wrist"),
    res: int = 64,
    batch: int = 512,
    rounds: int = 3,
    bf16: bool = False,
    model_dir: str | Path | None = None,
) -> dict:
    """Frames/s (a frame = one time step, all cameras) of ``label`` (read, decode, infer, write) vs the
    same model's forward pass over the same frames held in memory (``model.predict`` on batches, torch's
    intra-op threads: how the model is run anywhere else), and a naive one-frame-at-a-time loop. For scale,
    ``model_lanes_frames_per_s`` runs the in-memory batches on the labeller's schedule (one single-threaded
    forward pass per core, no reading) and ``ratio_vs_model_lanes`` is the share of it labelling keeps.
    The model is the default PRM (random weights: speed does not depend on them) or a trained one from
    ``model_dir``, whose cameras and image size then set the recording's."""
    torch.manual_seed(0)
    trained = load(model_dir) if model_dir is not None else None
    if trained is not None:
        cameras, res = tuple(trained.config.cameras), trained.config.image_size
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "demos.h5"
        record(RecordConfig(task=task, num_demos=num_demos, out=source, cameras=tuple(cameras), res=res,
                            progress_bar=False))  # fmt: skip
        with DemoReader(source) as reader:
            instruction = reader.instruction
            frames = torch.cat([torch.from_numpy(reader.multiview(i)) for i in range(len(reader))])
        model = trained or ProgressRewardModel(PRMConfig(list(cameras), instructions=[instruction], image_size=res))
        model.eval()
        total = len(frames)

        def end_to_end() -> float:
            target = Path(tmp) / "label.h5"
            shutil.copyfile(source, target)
            start = time.perf_counter()
            label(target, model, "bench", batch=batch, bf16=bf16, progress_bar=False)
            return total / (time.perf_counter() - start)

        def forward_only() -> float:
            start = time.perf_counter()
            for s in range(0, total, batch):
                model.predict(frames[s : s + batch], instruction, list(cameras), bf16)
            return total / (time.perf_counter() - start)

        starts = range(0, total, batch)

        def forward_in_lanes() -> float:
            """The labeller's schedule on in-memory batches: one single-threaded forward pass per core."""
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    start = time.perf_counter()
                    cams = list(cameras)
                    list(pool.map(lambda s: model.predict(frames[s : s + batch], instruction, cams, bf16), starts))
                    return total / (time.perf_counter() - start)
            finally:
                torch.set_num_threads(threads)

        ours, model_rates, lane_rates = [], [], []
        for _ in range(rounds):
            ours.append(end_to_end())
            model_rates.append(forward_only())
            lane_rates.append(forward_in_lanes())
        naive_count = min(total, 300)
        start = time.perf_counter()
        for k in range(naive_count):
            model.predict(frames[k : k + 1], instruction, list(cameras), bf16)
        naive = naive_count / (time.perf_counter() - start)
    return {
        "frames_per_s": round(statistics.median(ours), 1),
        "model_frames_per_s": round(statistics.median(model_rates), 1),
        "ratio": round(statistics.median(a / b for a, b in zip(ours, model_rates, strict=True)), 3),
        "naive_frames_per_s": round(naive, 1),
        "model_lanes_frames_per_s": round(statistics.median(lane_rates), 1),
        "ratio_vs_model_lanes": round(statistics.median(a / b for a, b in zip(ours, lane_rates, strict=True)), 3),
        "images_per_frame": len(cameras),
        "frames": total,
        "batch": batch,
        "bf16": bf16,
        "torch_threads": torch.get_num_threads(),
        "model": str(model_dir) if model_dir is not None else "default PRM",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
