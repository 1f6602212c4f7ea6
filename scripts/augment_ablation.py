"""Each augmentation's effect on a small PRM, in distribution and on a shifted camera (the README's table).

    .venv/bin/python scripts/augment_ablation.py [--task reach] [--steps 300] [--seeds 2]

Records train / held-out demos at 32 px, trains a small PRM per variant (shift only; + one photometric
knob; all of them), and reports mean held-out VOC on the plain frames and on the same frames seen by
"another camera" (a warm colour cast, 20 % darker, pixel noise: the test's shift). Small on purpose:
minutes on 2 cores; the default PRM's own numbers come from the main job.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from robo_reward.data.reader import DemoReader
from robo_reward.data.record import RecordConfig, record
from robo_reward.models.metrics import voc
from robo_reward.models.prm_train import PRMTrainConfig, train_prm

KNOBS = {"brightness": 0.3, "contrast": 0.3, "colour": 0.3, "noise": 0.05, "blur": 0.3}


def shifted(frames: np.ndarray, seed: int) -> torch.Tensor:
    x = torch.from_numpy(frames).float() / 255
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return ((x * torch.tensor([1.25, 0.85, 0.8]) * 0.8 + 0.05 * noise).clamp(0, 1) * 255).round().to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lr-schedule", default="constant", help="constant: as the README's table was measured")
    args = parser.parse_args()
    variants = {"shift only": {}, **{f"+ {k}": {k: v} for k, v in KNOBS.items()}, "all": KNOBS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train, heldout = Path(tmp) / "train.h5", Path(tmp) / "heldout.h5"
        for path, count, seed in ((train, 24, 0), (heldout, 12, 7)):
            record(RecordConfig(task=args.task, num_demos=count, out=path, cameras=("front", "wrist"), res=32,
                                failure_rate=0.2, seed=seed, progress_bar=False))  # fmt: skip
        net = {"cameras": ["front", "wrist"], "channels": [8, 16], "embed_dim": 32}
        for name, knobs in variants.items():
            plain, moved = [], []
            for seed in range(args.seeds):
                cfg = PRMTrainConfig(steps=args.steps, batch_size=64, pairs=16, augment=knobs, seed=seed,
                                     torch_threads=1, save_every=10**6, lr_schedule=args.lr_schedule)  # fmt: skip
                model, _ = train_prm([train], Path(tmp) / f"{name}_{seed}", net, cfg, False)
                with DemoReader(heldout) as reader:
                    for i in (i for i in range(len(reader)) if reader.success(i)):
                        frames = reader.multiview(i)
                        plain.append(voc(model.progress(torch.from_numpy(frames), reader.instruction).numpy()))
                        moved.append(voc(model.progress(shifted(frames, i), reader.instruction).numpy()))
            rows.append({"variant": name, "voc_in_distribution": round(float(np.mean(plain)), 3),
                         "voc_shifted_camera": round(float(np.mean(moved)), 3)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
