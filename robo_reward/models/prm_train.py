"""Training the process reward model from demo files, resumable after a kill.

Targets: successful episodes give stage-based (or time-normalised) progress; every
frame of a failed episode, and every frame of a successful one before its end (a temporally clipped
prefix), is a negative for the success head; pairs of frames in either order train the hop head.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from robo_reward.data.reader import DemoReader
from robo_reward.models.augment import AugmentConfig, augment
from robo_reward.models.checkpoint import load_checkpoint, save_checkpoint
from robo_reward.models.prm import PRMConfig, ProgressRewardModel, progress_loss, progress_targets
from robo_reward.progress import progress_bar

STATE_DIR = "train_state"  # model + optimizer + step, for resuming


@dataclass
class DemoSet:
    """Every frame of some demo files in memory. F frames, V views."""

    frames: torch.Tensor  # uint8 (F, V, S, S, 3)
    task: torch.Tensor  # int64 (F,)
    target: torch.Tensor  # float32 (F,) progress target, NaN where unknown (failed episodes)
    success: torch.Tensor  # float32 (F,) 1 on the final frame of a successful episode
    starts: np.ndarray  # (E,) first frame of each episode
    lengths: np.ndarray  # (E,)
    episode_success: np.ndarray  # (E,) bool


def load_demos(
    paths: list[str | Path], cameras: list[str], instructions: list[str] | None = None,
    episodes: list[int] | None = None,
) -> tuple[DemoSet, list[str]]:  # fmt: skip
    """Read demo files (only ``episodes`` of each, if given) into a :class:`DemoSet`; instructions not
    in ``instructions`` are appended."""
    instructions = list(instructions or [])
    frames, task, target, success, lengths, ep_success = [], [], [], [], [], []
    for path in paths:
        with DemoReader(path) as reader:
            missing = [c for c in cameras if c not in reader.cameras]
            if missing:
                raise ValueError(f"{path}: has no cameras {missing} (it has {reader.cameras})")
            if reader.instruction not in instructions:
                instructions.append(reader.instruction)
            task_id = instructions.index(reader.instruction)
            stages = len(reader.stage_names)
            for i in range(len(reader)) if episodes is None else episodes:
                if not 0 <= i < len(reader):
                    raise ValueError(f"{path}: no episode {i} (it has {len(reader)})")
                ep = reader.multiview(i, cameras=cameras)
                length, ok = len(ep), reader.success(i)
                stage = reader.privileged(i, "stage")
                frames.append(torch.from_numpy(ep))
                task.append(np.full(length, task_id))
                target.append(progress_targets(length, stage, stages) if ok else np.full(length, np.nan, np.float32))
                label = np.zeros(length, np.float32)
                label[-1] = float(ok)
                success.append(label)
                lengths.append(length)
                ep_success.append(ok)
    lengths_arr = np.array(lengths)
    demos = DemoSet(
        frames=torch.cat(frames),
        task=torch.from_numpy(np.concatenate(task)).long(),
        target=torch.from_numpy(np.concatenate(target)),
        success=torch.from_numpy(np.concatenate(success)),
        starts=np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]),
        lengths=lengths_arr,
        episode_success=np.array(ep_success),
    )
    return demos, instructions


@dataclass
class PRMTrainConfig:
    steps: int = 1500
    batch_size: int = 128
    pairs: int = 32  # hop-head pairs per batch
    positive_share: float = 0.2  # batch share of final frames of successful episodes
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: AugmentConfig | dict = field(default_factory=AugmentConfig)  # per-image shifts, colour, noise, blur
    seed: int = 0
    save_every: int = 250
    shuffle_targets: bool = False  # control experiment: progress targets permuted across frames
    torch_threads: int = 2
    init_from: str | None = None  # a trained PRM to start from (fine-tuning, one-shot adaptation)
    episodes: list[int] | None = None  # train on these episodes of each file only (e.g. [0]: one shot)
    train_only: list[str] | None = None  # parameter-name prefixes to train (e.g. [task_embedding]); others frozen

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            unknown = set(self.augment) - set(AugmentConfig.__dataclass_fields__)
            if unknown:
                raise ValueError(f"reward.train.augment: unknown keys {sorted(unknown)}; known: "
                                 f"{', '.join(AugmentConfig.__dataclass_fields__)}")  # fmt: skip
            self.augment = AugmentConfig(**self.augment)


def _sample(demos: DemoSet, cfg: PRMTrainConfig, gen: torch.Generator):
    n_pos = int(cfg.batch_size * cfg.positive_share)
    positives = torch.nonzero(demos.success > 0).squeeze(1)
    idx = torch.randint(0, len(demos.frames), (cfg.batch_size - n_pos,), generator=gen)
    if len(positives) and n_pos:
        idx = torch.cat([idx, positives[torch.randint(0, len(positives), (n_pos,), generator=gen)]])
    ok_eps = np.flatnonzero(demos.episode_success)
    ep = torch.from_numpy(ok_eps)[torch.randint(0, len(ok_eps), (cfg.pairs,), generator=gen)].numpy()
    a = demos.starts[ep] + (torch.rand(cfg.pairs, generator=gen).numpy() * demos.lengths[ep]).astype(int)
    b = demos.starts[ep] + (torch.rand(cfg.pairs, generator=gen).numpy() * demos.lengths[ep]).astype(int)
    return idx, torch.from_numpy(a), torch.from_numpy(b)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": opt.state_dict()["param_groups"]}
    for pid, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{pid}.{key}"] = torch.as_tensor(value)
    return tensors, meta


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def init_from_trained(model: ProgressRewardModel, tensors: dict[str, torch.Tensor]) -> None:
    """Load a trained PRM's weights into ``model``, whose instruction list may be longer: the known
    instructions keep their embeddings, new ones start from the mean of the known ones."""
    known = tensors["task_embedding.weight"]
    table = model.task_embedding.weight.detach().clone()
    table[: len(known)] = known
    table[len(known) :] = known.mean(0)
    model.load_state_dict({**tensors, "task_embedding.weight": table})


def train_prm(
    data: list[str | Path], out: str | Path, model_cfg: dict, cfg: PRMTrainConfig, log=None, name: str = "prm"
) -> tuple[ProgressRewardModel, dict]:
    """Train (or resume) a PRM on ``data``; write the final checkpoint to ``out``. Returns (model, summary).

    ``name`` is stored in its config: ``robo-reward label`` files the model's progress under it."""
    torch.set_num_threads(cfg.torch_threads)
    out = Path(out)
    base = load_checkpoint(cfg.init_from) if cfg.init_from else None
    if base is not None:  # architecture, cameras and known instructions come from the trained model
        fields = PRMConfig.__dataclass_fields__
        model_cfg = {key: value for key, value in base[1].items() if key in fields}
    cameras = list(model_cfg["cameras"])
    demos, instructions = load_demos(data, cameras, model_cfg.get("instructions"), cfg.episodes)
    if not demos.episode_success.any():
        files = ", ".join(str(path) for path in data)
        raise ValueError(f"{files}: no successful episode{' among ' + str(cfg.episodes) if cfg.episodes else ''}"
                         " — progress targets come from successful demos")  # fmt: skip
    size = demos.frames.shape[2]
    config = PRMConfig(**{**model_cfg, "cameras": cameras, "instructions": instructions, "image_size": size})
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = ProgressRewardModel(config)
    if base is not None:
        init_from_trained(model, base[0])
    if cfg.train_only is not None:
        for name, param in model.named_parameters():
            param.requires_grad_(any(name.startswith(prefix) for prefix in cfg.train_only))
    trainable = [param for param in model.parameters() if param.requires_grad]
    if not trainable:
        raise ValueError(f"train_only={cfg.train_only} matches no parameter of the model")
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = resumed_from = 0
    state_dir = out / STATE_DIR
    if (state_dir / "config.json").exists():  # resume after a kill
        tensors, meta = load_checkpoint(state_dir)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(opt, tensors, meta)
        step = resumed_from = int(meta["step"])
        gen.set_state(tensors["rng"].to(torch.uint8))
    target = demos.target
    if cfg.shuffle_targets:
        known = torch.nonzero(~torch.isnan(target)).squeeze(1)
        target = target.clone()
        target[known] = target[known][torch.randperm(len(known), generator=torch.Generator().manual_seed(cfg.seed))]
    start = time.perf_counter()
    model.train()
    losses = {}
    with progress_bar(total=cfg.steps, initial=step, desc="train prm", unit="step", disable=log is False) as bar:
        while step < cfg.steps:
            idx, a, b = _sample(demos, cfg, gen)
            frames = augment(torch.cat([demos.frames[idx], demos.frames[a], demos.frames[b]]), cfg.augment, gen)
            h = model.embed(frames, torch.cat([demos.task[idx], demos.task[a], demos.task[b]]))
            h_main, h_a, h_b = h.split([len(idx), len(a), len(b)])
            out_heads = model.heads(h_main)
            tgt = target[idx]
            known = ~torch.isnan(tgt)
            loss_progress = (
                progress_loss(out_heads["progress_logits"][known], tgt[known]) if known.any() else h.sum() * 0
            )
            loss_success = F.binary_cross_entropy_with_logits(out_heads["success_logit"], demos.success[idx])
            loss_hop = F.mse_loss(model.hop(h_a, h_b), target[b] - target[a])
            loss = loss_progress + loss_success + loss_hop
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses = {"progress": loss_progress.item(), "success": loss_success.item(), "hop": loss_hop.item()}
            if log:
                log(step, losses)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.save_every == 0 or step == cfg.steps:
                opt_tensors, meta = _optimizer_tensors(opt)
                tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_tensors,
                           "rng": gen.get_state()}  # fmt: skip
                save_checkpoint(state_dir, tensors, {"kind": "prm_train_state", "step": step, **meta})
    model.eval()
    wall = time.perf_counter() - start
    summary = {"steps": step, "train_wall_time_s": round(wall, 1), "frames": len(demos.frames),
               "episodes": len(demos.lengths), "final_losses": losses, "resumed_from_step": resumed_from}  # fmt: skip
    model.save(out, extra={"name": name, "training": summary})
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return model, summary
