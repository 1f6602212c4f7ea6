"""``robo-train-reward``: train a reward model from demo files (Hydra app, ``conf/train_reward.yaml``).

The story: check the config and inputs → make sure ``out`` holds nothing or this same run (``run.json``)
→ train (resuming from the folder's training state) → save ``weights.safetensors`` + ``config.json`` →
evaluate on held-out demos if given. TensorBoard scalars go to the output folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from robo_reward import distributed, runs
from robo_reward.app import (
    USER_ERRORS,
    UsageError,
    discard_empty_run,
    first_line,
    guarded,
    hydra_app,
    readable_demo_file,
)
from robo_reward.distributed import Ranks
from robo_reward.models.evaluate import evaluate
from robo_reward.models.prm_train import STATE_DIR, PRMTrainConfig, per_rank, train_prm
from robo_reward.models.vlm import train_vlm

KINDS = ("prm", "vlm")
# keys that may change between a killed run and its resumption: how long, how often to save, how many threads
RESUMABLE_KEYS = ("steps", "save_every", "torch_threads")
NOT_CONTENT = {".hydra", "train_reward.log", runs.RUN_FILE, "tensorboard"}


def data_files(cfg: DictConfig) -> list[str]:
    return [str(p) for p in cfg.data] if isinstance(cfg.data, ListConfig) else [str(cfg.data)]


def check_config(cfg: DictConfig) -> None:
    """Refuse what cannot work before any file is read for training or written."""
    if OmegaConf.is_missing(cfg, "data") or not cfg.data:
        raise UsageError("data=FILE is required: the demo file (or [a.h5,b.h5]) to train on")
    for path in data_files(cfg):
        readable_demo_file(path, "data")
    if cfg.eval_data:
        readable_demo_file(cfg.eval_data, "eval_data")
    if cfg.reward.name not in KINDS:
        raise UsageError(f"reward={cfg.reward.name}: cannot be trained here; trainable: {', '.join(KINDS)}")
    train = cfg.reward.train
    minimum = 0 if cfg.reward.name == "vlm" else 1  # a VL reward with 0 steps is zero-shot CLIP
    if not isinstance(train.steps, int) or train.steps < minimum:
        raise UsageError(f"reward.train.steps={train.steps}: must be an integer ≥ {minimum}")
    if not isinstance(train.batch_size, int) or train.batch_size < 1:
        raise UsageError(f"reward.train.batch_size={train.batch_size}: must be a positive integer")
    if not isinstance(cfg.name, str) or not cfg.name or "/" in cfg.name:
        raise UsageError(f"name={cfg.name}: must be a non-empty name without '/' (labels are stored under it)")
    init_from = train.get("init_from")
    if init_from and not (Path(init_from) / "config.json").is_file():
        raise UsageError(f"reward.train.init_from={init_from}: not a reward-model folder (no config.json)")


def run_identity(cfg: DictConfig) -> dict:
    reward = OmegaConf.to_container(cfg.reward, resolve=True)
    for key in RESUMABLE_KEYS:
        reward["train"].pop(key, None)
    reward.pop("model", None)  # robo-train's keys, not this app's
    inputs = {f"data[{i}]": path for i, path in enumerate(data_files(cfg))}
    inputs["reward.train.init_from"] = cfg.reward.train.get("init_from")
    return runs.identity({"reward": reward, "seed": cfg.seed, "name": cfg.name}, inputs)


def check_launch(cfg: DictConfig, ranks: Ranks) -> None:
    """What a torchrun launch needs on top of :func:`check_config` (world size 1: nothing)."""
    if not ranks.distributed:
        return
    if cfg.reward.name != "prm":
        raise UsageError(f"reward={cfg.reward.name}: distributed training is implemented for reward=prm; "
                         "run this one as a single process")  # fmt: skip
    per_rank(PRMTrainConfig(**OmegaConf.to_container(cfg.reward.train, resolve=True)), ranks)


def prepare_out(cfg: DictConfig, ranks: Ranks) -> None:
    """Rank 0 makes sure ``out`` holds nothing or this same run and records it; the other ranks wait for
    its verdict and stop with the same one line if it refused (instead of waiting in a collective)."""
    out, error = Path(cfg.out), ""
    if ranks.is_main:
        try:
            ident = run_identity(cfg)
            if cfg.fresh:
                shutil.rmtree(out / STATE_DIR, ignore_errors=True)
            else:
                runs.check_same_run(out, ident, "pass fresh=true to start over in it, another out= for a new model, "
                                    "or reward.train.init_from=<it> with a new out= to fine-tune it")  # fmt: skip
            runs.save(out, ident)
        except USER_ERRORS as refused:
            error = first_line(refused)
    refused = distributed.broadcast_text(ranks, error)
    if refused:
        raise UsageError(refused)


def run(cfg: DictConfig, ranks: Ranks | None = None) -> dict:
    ranks = ranks or Ranks()
    check_config(cfg)
    check_launch(cfg, ranks)
    out = Path(cfg.out)
    prepare_out(cfg, ranks)
    model_cfg = OmegaConf.to_container(cfg.reward.net, resolve=True)
    train = OmegaConf.to_container(cfg.reward.train, resolve=True)
    writer = SummaryWriter(log_dir=str(out / "tensorboard")) if ranks.is_main else None

    def log(step: int, losses: dict) -> None:
        if step % 10 == 0 and writer is not None:
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", value, step)

    data = data_files(cfg)
    if cfg.reward.name == "prm":
        model, summary = train_prm(data, out, model_cfg, PRMTrainConfig(**train, seed=cfg.seed), log, name=cfg.name,
                                   ranks=ranks)  # fmt: skip
    else:
        model, summary = train_vlm(data, out, model_cfg, **train, seed=cfg.seed, pretrained=cfg.reward.pretrained,
                                   name=cfg.name)  # fmt: skip
    if writer is None:  # ranks other than 0 have trained the same model; rank 0 evaluates and reports it
        return {**summary, "model": str(out), "name": cfg.name}
    if cfg.eval_data:
        metrics = evaluate(model, cfg.eval_data, plot=out / "eval_curves.png")
        for name in ("voc", "success_auc", "progress_mae"):
            if name in metrics:
                writer.add_scalar(f"eval/{name}", metrics[name], summary["steps"])
        (out / "eval.json").write_text(json.dumps(metrics, indent=2))
        summary["eval"] = metrics
    writer.close()
    return {**summary, "model": str(out), "name": cfg.name}


def job(cfg: DictConfig) -> None:
    out = Path(cfg.out)
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)

    def cleanup() -> None:
        if out.resolve() == hydra_dir.resolve():
            discard_empty_run(out, also=NOT_CONTENT)

    def kept() -> str:
        cleanup()
        if (out / STATE_DIR / "config.json").is_file():
            return f"training state kept in {out}: rerun the same command with out={out} to resume"
        return "nothing kept (no training state was saved yet)"

    ranks = distributed.init()
    try:
        with guarded("robo-train-reward", kept, on_error=cleanup if ranks.is_main else None):
            summary = run(cfg, ranks)
    finally:
        distributed.shutdown()
    if not ranks.is_main:
        return
    print(f"reward model {summary['name']!r} written to {summary['model']} (robo-reward label FILE --model "
          f"{summary['model']} stores its progress under /labels/{summary['name']})")  # fmt: skip
    print(json.dumps({key: summary[key] for key in summary if key != "final_losses"}))


main = hydra_app("robo-train-reward", "train_reward", job, torchrun_needs=("out",))


if __name__ == "__main__":
    main()
