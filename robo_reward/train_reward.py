"""``robo-train-reward``: train a reward model from demo files (Hydra app, ``conf/train_reward.yaml``).

The story: read the demos → train (resuming if the output folder holds a training state) → save
``weights.safetensors`` + ``config.json`` → evaluate on held-out demos if given. TensorBoard scalars
go to the output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from robo_reward.models.evaluate import evaluate
from robo_reward.models.prm_train import PRMTrainConfig, train_prm
from robo_reward.models.vlm import train_vlm


def run(cfg: DictConfig) -> dict:
    out = Path(cfg.out)
    data = list(cfg.data) if isinstance(cfg.data, ListConfig) else [cfg.data]
    model_cfg = OmegaConf.to_container(cfg.reward.net, resolve=True)
    train = OmegaConf.to_container(cfg.reward.train, resolve=True)
    writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(step: int, losses: dict) -> None:
        if step % 10 == 0:
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", value, step)

    if cfg.reward.name == "prm":
        model, summary = train_prm(data, out, model_cfg, PRMTrainConfig(**train, seed=cfg.seed), log)
    elif cfg.reward.name == "vlm":
        model, summary = train_vlm(data, out, model_cfg, **train, seed=cfg.seed, pretrained=cfg.reward.pretrained)
    else:
        raise ValueError(f"unknown reward model {cfg.reward.name!r}; available: prm, vlm")
    if cfg.eval_data:
        metrics = evaluate(model, cfg.eval_data, plot=out / "eval_curves.png")
        for name in ("voc", "success_auc", "progress_mae"):
            if name in metrics:
                writer.add_scalar(f"eval/{name}", metrics[name], summary["steps"])
        (out / "eval.json").write_text(json.dumps(metrics, indent=2))
        summary["eval"] = metrics
    writer.close()
    return summary


@hydra.main(config_path="../conf", config_name="train_reward", version_base=None)
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    print(json.dumps({key: summary[key] for key in summary if key != "final_losses"}))


if __name__ == "__main__":
    main()
