"""``robo-reward bench label``: end-to-end labelling vs the model's forward pass, in one run."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from robo_reward.data.inflate import FrameReader
from robo_reward.data.reader import DemoReader
from robo_reward.data.record import RecordConfig, record
from robo_reward.label import label
from robo_reward.models import load
from robo_reward.models.prm import PRMConfig, ProgressRewardModel
from sim.timing import alternate, median_ratio, medians


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
    ``ratio_vs_bound`` compares labelling with what the cores could do at best: the read path's decode and
    the forward pass each timed on one thread, their CPU time per frame spread perfectly over the cores.
    What labelling does against that bound: ``lanes_busy`` (the share of its wall time the lanes spent decoding
    or inferring) and the decode and forward rates per lane while the lanes ran side by side
    (``*_frames_per_s_in_lanes``, against the ``*_one_thread`` rates measured alone).
    The model is the default PRM (random weights: speed does not depend on them) or a trained one from
    ``model_dir``, whose cameras and image size then set the recording's."""
    torch.manual_seed(0)
    trained = load(model_dir) if model_dir is not None else None
    if trained is not None:
        cameras, res = tuple(trained.cameras), trained.image_size
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "demos.h5"
        record(RecordConfig(task=task, num_demos=num_demos, out=source, cameras=tuple(cameras), res=res,
                            progress_bar=False))  # fmt: skip
        with DemoReader(source) as reader:
            instruction = reader.instruction
            episodes = [torch.from_numpy(reader.multiview(i)) for i in range(len(reader))]
            lengths = [(reader.names[i], len(episode)) for i, episode in enumerate(episodes)]
            frames = torch.cat(episodes)
        model = trained or ProgressRewardModel(PRMConfig(list(cameras), instructions=[instruction], image_size=res))
        model.eval()
        total = len(frames)

        inside: list[tuple[float, float, float]] = []  # per end-to-end run: wall, lanes' decode and forward seconds

        def end_to_end() -> float:
            target = Path(tmp) / "label.h5"
            shutil.copyfile(source, target)
            start = time.perf_counter()
            seconds = label(target, model, "bench", batch=batch, bf16=bf16, progress_bar=False)["lane_seconds"]
            wall = time.perf_counter() - start
            inside.append((wall, seconds["decode"], seconds["forward"]))
            return total / wall

        def forward_only() -> float:
            start = time.perf_counter()
            for s in range(0, total, batch):
                model.predict(frames[s : s + batch], instruction, list(cameras), bf16)
            return total / (time.perf_counter() - start)

        starts = range(0, total, batch)
        cams = list(cameras)

        def forward_in_lanes() -> float:
            """The labeller's schedule on in-memory batches: one single-threaded forward pass per core."""
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    start = time.perf_counter()
                    list(pool.map(lambda s: model.predict(frames[s : s + batch], instruction, cams, bf16), starts))
                    return total / (time.perf_counter() - start)
            finally:
                torch.set_num_threads(threads)


        def decode_one_thread() -> float:
            """The labeller's read path alone, one thread: every frame decoded into a batch buffer."""
            buffer = np.empty((batch, len(cams), res, res, 3), np.uint8)
            with FrameReader(source, cams, (res, res, 3)) as reader:
                start = time.perf_counter()
                for name, length in lengths:
                    for s in range(0, length, batch):
                        reader.read([(name, s, min(s + batch, length))], buffer)
                return total / (time.perf_counter() - start)

        def forward_one_thread() -> float:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return forward_only()
            finally:
                torch.set_num_threads(threads)

        rates = alternate({"ours": end_to_end, "model": forward_only, "lanes": forward_in_lanes,
                           "decode1": decode_one_thread, "forward1": forward_one_thread}, rounds)  # fmt: skip
        cores = torch.get_num_threads()  # the labeller runs one lane per torch thread
        # decode and forward CPU time per frame, perfectly spread over the cores: the most labelling can do
        bounds = [cores / (1 / d + 1 / f) for d, f in zip(rates["decode1"], rates["forward1"], strict=True)]
        ours, model_rates, lane_rates = rates["ours"], rates["model"], rates["lanes"]
        # inside labelling: how busy the lanes were, and their decode and forward rates while side by side
        busy = statistics.median((d + f) / (cores * wall) for wall, d, f in inside)
        decode_in, forward_in = (statistics.median(total / run[k] for run in inside) for k in (1, 2))
        naive_count = min(total, 300)
        start = time.perf_counter()
        for k in range(naive_count):
            model.predict(frames[k : k + 1], instruction, list(cameras), bf16)
        naive = naive_count / (time.perf_counter() - start)
    return {
        "frames_per_s": round(statistics.median(ours), 1),
        "model_frames_per_s": round(statistics.median(model_rates), 1),
        "ratio": round(median_ratio(ours, model_rates), 3),
        "naive_frames_per_s": round(naive, 1),
        "model_lanes_frames_per_s": round(statistics.median(lane_rates), 1),
        "ratio_vs_model_lanes": round(median_ratio(ours, lane_rates), 3),
        "bound_frames_per_s": round(statistics.median(bounds), 1),
        "ratio_vs_bound": round(median_ratio(ours, bounds), 3),
        "decode_frames_per_s_one_thread": round(medians(rates)["decode1"], 1),
        "lanes_busy": round(busy, 3),
        "decode_frames_per_s_in_lanes": round(decode_in, 1),
        "forward_frames_per_s_in_lanes": round(forward_in, 1),
        "forward_frames_per_s_one_thread": round(medians(rates)["forward1"], 1),
        "images_per_frame": len(cameras),
        "frames": total,
        "batch": batch,
        "bf16": bf16,
        "torch_threads": torch.get_num_threads(),
        "model": str(model_dir) if model_dir is not None else "default PRM",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
