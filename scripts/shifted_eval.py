"""The default PRM in distribution and on looks it never saw in training (the README's shifted-evaluation table).

    .venv/bin/python scripts/shifted_eval.py [--task push_cube] [--train-demos 64] [--heldout-demos 24]
                                             [--variants plain,randomised,randomised+colour] [--seeds 0,1,2]
                                             [--train lr_schedule=constant ...] [--stop-after-success 10]
                                             [--out runs/shifted_eval]

Records, at 64 px with the front and wrist cameras and 20 % spoiled episodes:
- ``train_plain`` / ``train_rand``: the training demos, as the scene is built and with the task's default domain
  randomisation (``record --randomize``);
- ``heldout_plain`` / ``heldout_rand``: held-out demos (another seed) rendered like each training set;
- ``heldout_unseen``: held-out demos whose looks lie strictly outside the training ranges: colour shifts
  beyond the training jitter (e.g. the table's 0.25–0.35 per channel against ±0.25), lights tilted 0.5–0.8 rad
  (training ≤ 0.5) and 0.45–0.6 as bright (training 0.6–1.4) with a stronger tint, cameras moved 2–3.5 cm and
  turned 0.04–0.06 rad per axis (training ≤ 2 cm, ≤ 0.04 rad), fov off by 3–5° (training ≤ 3°).
The held-out demos end 10 frames after their first success frame (``record --stop-after-success 10``, as a person
stops recording once the task is done; ``--stop-after-success none``: at push_cube's 100-step limit, which leaves
a still tail of about half the episode whose order no model can know); the training demos run to the limit.
Then trains the PRM with ``conf/reward/prm.yaml``'s defaults per variant (which data, which augmentations), once
per seed, and reports VOC and success AUC on each held-out set: every (variant, seed) as a JSON line, then per
variant the mean over seeds with the range of VOC. Off distribution one seed's figure can be far from another's
(VOC 0.36–0.85 on never-seen looks for one recipe), so a single seed says little.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from robo_reward.app import compose_config
from robo_reward.data.record import RecordConfig, record
from robo_reward.models.evaluate import evaluate
from robo_reward.models.prm_train import PRMTrainConfig, train_prm

CAMERAS = ("front", "wrist")
# beyond sim.randomize.default_config() on every appearance axis (magnitudes [lo, hi] with a random sign)
UNSEEN = {
    "enabled": True,
    "color": {"object": [0.2, 0.3], "table": [0.25, 0.35], "floor": [0.3, 0.4], "robot": [0.2, 0.3]},
    "light": {"intensity": [0.45, 0.6], "color": [0.15, 0.25], "direction": [0.5, 0.8]},
    "camera": {"position": [0.02, 0.035], "rotation": [0.04, 0.06], "fovy": [3.0, 5.0]},
}
COLOUR = {"colour": 0.3, "brightness": 0.2}
VARIANTS = {  # name: (training data, augment overrides on top of the default)
    "plain": ("train_plain", {}),
    "randomised+colour": ("train_rand", COLOUR),
    "randomised": ("train_rand", {}),
    "plain+colour": ("train_plain", COLOUR),
    "randomised+strong": ("train_rand", {"colour": 0.5, "brightness": 0.35, "contrast": 0.2, "noise": 0.02}),
    "randomised+hue": ("train_rand", {**COLOUR, "hue": 0.5, "saturation": 0.3}),
    "randomised+randconv": ("train_rand", {**COLOUR, "randconv": 0.5}),
}
SETS = ("heldout_plain", "heldout_rand", "heldout_unseen")


def record_sets(task: str, out: Path, train_demos: int, heldout_demos: int, stop: int | None) -> dict[str, Path]:
    plans = {
        "train_plain": (train_demos, 0, None),
        "train_rand": (train_demos, 0, {"enabled": True}),
        "heldout_plain": (heldout_demos, 1, None),
        "heldout_rand": (heldout_demos, 1, {"enabled": True}),
        "heldout_unseen": (heldout_demos, 2, UNSEEN),
    }
    paths = {}
    for name, (count, seed, randomize) in plans.items():
        held = name.startswith("heldout") and stop is not None
        paths[name] = out / (f"{name}_stop{stop}.h5" if held else f"{name}.h5")
        if not paths[name].exists():
            record(RecordConfig(task=task, num_demos=count, out=paths[name], cameras=CAMERAS, res=64,
                                failure_rate=0.2, seed=seed, progress_bar=False,
                                stop_after_success=stop if held else None,
                                task_config={"randomize": randomize} if randomize else None))  # fmt: skip
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="push_cube")
    parser.add_argument("--train-demos", type=int, default=64)
    parser.add_argument("--heldout-demos", type=int, default=24)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: conf/reward/prm.yaml's)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds; each variant is trained once per seed")
    parser.add_argument("--train", nargs="*", default=[], help="reward.train overrides, e.g. lr_schedule=constant")
    parser.add_argument("--stop-after-success", default="10",
                        help="held-out demos end this many frames after success ('none': at the time limit)")
    parser.add_argument("--out", default="runs/shifted_eval")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stop = None if args.stop_after_success == "none" else int(args.stop_after_success)
    paths = record_sets(args.task, out, args.train_demos, args.heldout_demos, stop)
    defaults = compose_config("train_reward", ["reward=prm", *(f"reward.train.{item}" for item in args.train)])
    net = OmegaConf.to_container(defaults.reward.net, resolve=True)
    rows = []
    for name in args.variants.split(","):
        data, augment = VARIANTS[name]
        train = OmegaConf.to_container(defaults.reward.train, resolve=True)
        train["augment"] = {**train["augment"], **augment}
        train["steps"] = args.steps or train["steps"]
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = out / "models" / "-".join([name, f"seed{seed}", *args.train])
            start = time.perf_counter()
            model, _ = train_prm([paths[data]], folder, {**net, "cameras": list(CAMERAS)},
                                 PRMTrainConfig(**train, seed=seed), name=name)  # fmt: skip
            row = {"variant": name, "seed": seed, "train_data": data, "augment": train["augment"],
                   "overrides": args.train, "train_s": round(time.perf_counter() - start, 1)}  # fmt: skip
            for held in SETS:
                metrics = evaluate(model, paths[held])
                row[held] = {"voc": round(metrics["voc"], 3), "success_auc": round(metrics["success_auc"], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """Per variant, the mean over seeds of VOC / success AUC on each held-out set, with the seeds' range:
    one seed's figure off distribution can sit far from another's (README)."""
    print("| variant | seeds | " + " | ".join(f"{s}: VOC / AUC (VOC range)" for s in SETS) + " |")
    print("|---|---|" + "---|" * len(SETS))
    for name in dict.fromkeys(row["variant"] for row in rows):
        mine = [row for row in rows if row["variant"] == name]
        cells = []
        for held in SETS:
            vocs = [row[held]["voc"] for row in mine]
            aucs = [row[held]["success_auc"] for row in mine]
            cells.append(f"{sum(vocs) / len(vocs):.3f} / {sum(aucs) / len(aucs):.3f} ({min(vocs):.2f}–{max(vocs):.2f})")
        print(f"| {name} | {len(mine)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
