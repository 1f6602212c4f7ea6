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

from robo_reward import distributed
from robo_reward.data.reader import DemoReader
from robo_reward.distributed import Ranks
from robo_reward.models.augment import AugmentConfig, augment
from robo_reward.models.checkpoint import load_checkpoint, save_checkpoint
from robo_reward.models.prm import PRMConfig, ProgressRewardModel, progress_loss, progress_targets
from robo_reward.models.schedule import check_schedule, learning_rate
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
    episodes: list[int] | None = None, shard: Ranks | None = None,
) -> tuple[DemoSet, list[str]]:  # fmt: skip
    """Read demo files (only ``episodes`` of each, if given) into a :class:`DemoSet`; instructions not
    in ``instructions`` are appended. With ``shard``, a rank reads only every ``world_size``-th episode
    (counted over all files), starting at its rank: ranks hold disjoint parts of the data."""
    instructions = list(instructions or [])
    frames, task, target, success, lengths, ep_success = [], [], [], [], [], []
    counter = -1
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
                counter += 1
                if shard is not None and counter % shard.world_size != shard.rank:
                    continue
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
    if not lengths:
        raise ValueError(f"{', '.join(map(str, paths))}: no episode for rank {shard.rank} of {shard.world_size}"
                         " — fewer episodes than ranks")  # fmt: skip
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
    lr_schedule: str = "cosine"  # cosine: warm-up, then decay to 0 at the last step; constant (models/schedule.py)
    warmup_steps: int = 100
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
        check_schedule(self.lr_schedule, "reward.train")
        if isinstance(self.augment, dict):
            unknown = set(self.augment) - set(AugmentConfig.__dataclass_fields__)
            if unknown:
                raise ValueError(f"reward.train.augment: unknown keys {sorted(unknown)}; known: "
                                 f"{', '.join(AugmentConfig.__dataclass_fields__)}")  # fmt: skip
            self.augment = AugmentConfig(**self.augment)


def _sample(demos: DemoSet, batch_size: int, pairs: int, positive_share: float, gen: torch.Generator):
    n_pos = int(batch_size * positive_share)
    positives = torch.nonzero(demos.success > 0).squeeze(1)
    idx = torch.randint(0, len(demos.frames), (batch_size - n_pos,), generator=gen)
    if len(positives) and n_pos:
        idx = torch.cat([idx, positives[torch.randint(0, len(positives), (n_pos,), generator=gen)]])
    ok_eps = np.flatnonzero(demos.episode_success)
    ep = torch.from_numpy(ok_eps)[torch.randint(0, len(ok_eps), (pairs,), generator=gen)].numpy()
    a = demos.starts[ep] + (torch.rand(pairs, generator=gen).numpy() * demos.lengths[ep]).astype(int)
    b = demos.starts[ep] + (torch.rand(pairs, generator=gen).numpy() * demos.lengths[ep]).astype(int)
    return idx, torch.from_numpy(a), torch.from_numpy(b)


class PRMLoss(torch.nn.Module):
    """The training loss as one module's forward, so DistributedDataParallel can wrap it (it syncs the
    gradients of what runs inside ``forward``)."""

    def __init__(self, model: ProgressRewardModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames, tasks, sizes: list[int], target, success, hop_target) -> tuple[torch.Tensor, dict]:
        model = self.model
        h_main, h_a, h_b = model.embed(frames, tasks).split(sizes)
        out_heads = model.heads(h_main)
        known = ~torch.isnan(target)
        loss_progress = (
            progress_loss(out_heads["progress_logits"][known], target[known]) if known.any() else h_main.sum() * 0
        )
        loss_success = F.binary_cross_entropy_with_logits(out_heads["success_logit"], success)
        loss_hop = F.mse_loss(model.hop(h_a, h_b), hop_target)
        return loss_progress + loss_success + loss_hop, {"progress": loss_progress, "success": loss_success,
                                                         "hop": loss_hop}  # fmt: skip


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


def per_rank(cfg: PRMTrainConfig, ranks: Ranks) -> tuple[int, int]:
    """(frames, hop pairs) each rank draws per step: the configured batch is the global one."""
    if cfg.batch_size % ranks.world_size or cfg.pairs % ranks.world_size:
        raise ValueError(f"reward.train.batch_size={cfg.batch_size} and pairs={cfg.pairs} must be multiples of the "
                         f"{ranks.world_size} ranks (the configured batch is the global one)")  # fmt: skip
    return cfg.batch_size // ranks.world_size, cfg.pairs // ranks.world_size


def train_prm(
    data: list[str | Path], out: str | Path, model_cfg: dict, cfg: PRMTrainConfig, log=None, name: str = "prm",
    ranks: Ranks | None = None,
) -> tuple[ProgressRewardModel, dict]:  # fmt: skip
    """Train (or resume) a PRM on ``data``; write the final checkpoint to ``out``. Returns (model, summary).

    ``name`` is stored in its config: ``robo-reward label`` files the model's progress under it. Under
    ``torchrun`` (``ranks`` from :func:`robo_reward.distributed.init`) each rank trains on its shard of the
    episodes with its share of the global batch, gradients are averaged by DistributedDataParallel, and
    rank 0 alone saves training state, the model and the summary (every rank returns the same model)."""
    ranks = ranks or Ranks()
    batch, pairs = per_rank(cfg, ranks)
    torch.set_num_threads(cfg.torch_threads)
    out = Path(out)
    base = load_checkpoint(cfg.init_from) if cfg.init_from else None
    if base is not None:  # architecture, cameras and known instructions come from the trained model
        fields = PRMConfig.__dataclass_fields__
        model_cfg = {key: value for key, value in base[1].items() if key in fields}
    cameras = list(model_cfg["cameras"])
    if ranks.distributed:  # every rank must know every instruction, whichever episodes it holds
        model_cfg = {**model_cfg, "instructions": _all_instructions(data, model_cfg.get("instructions"))}
    shard = ranks if ranks.distributed else None
    demos, instructions = load_demos(data, cameras, model_cfg.get("instructions"), cfg.episodes, shard)
    if not demos.episode_success.any():
        files = ", ".join(str(path) for path in data)
        where = f" for rank {ranks.rank} of {ranks.world_size}" if ranks.distributed else ""
        raise ValueError(f"{files}: no successful episode{' among ' + str(cfg.episodes) if cfg.episodes else ''}"
                         f"{where} — progress targets come from successful demos")  # fmt: skip
    size = demos.frames.shape[2]
    config = PRMConfig(**{**model_cfg, "cameras": cameras, "instructions": instructions, "image_size": size})
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * ranks.rank)  # rank 0: the single-process stream
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
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
        saved_world = int(meta.get("world_size", 1))
        if saved_world != ranks.world_size:
            raise ValueError(f"{state_dir}: saved by {saved_world} rank(s), resumed with {ranks.world_size}; "
                             "resume with the same number of ranks (or fresh=true)")  # fmt: skip
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(opt, tensors, meta)
        step = resumed_from = int(meta["step"])
        gen.set_state(tensors["rng" if ranks.rank == 0 else f"rng.{ranks.rank}"].to(torch.uint8))
    loss_fn: torch.nn.Module = PRMLoss(model)
    if ranks.distributed:
        loss_fn = torch.nn.parallel.DistributedDataParallel(loss_fn)
    target = demos.target
    if cfg.shuffle_targets:
        known = torch.nonzero(~torch.isnan(target)).squeeze(1)
        target = target.clone()
        target[known] = target[known][torch.randperm(len(known), generator=torch.Generator().manual_seed(cfg.seed))]
    start = time.perf_counter()
    model.train()
    losses = {}
    quiet = log is False or not ranks.is_main
    with progress_bar(total=cfg.steps, initial=step, desc="train prm", unit="step", disable=quiet) as bar:
        while step < cfg.steps:
            idx, a, b = _sample(demos, batch, pairs, cfg.positive_share, gen)
            frames = augment(torch.cat([demos.frames[idx], demos.frames[a], demos.frames[b]]), cfg.augment, gen)
            tasks = torch.cat([demos.task[idx], demos.task[a], demos.task[b]])
            loss, parts = loss_fn(frames, tasks, [len(idx), len(a), len(b)], target[idx], demos.success[idx],
                                  target[b] - target[a])  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg.lr, step, cfg.steps, cfg.lr_schedule, cfg.warmup_steps)
            opt.step()
            step += 1
            losses = {key: value.item() for key, value in parts.items()}  # this rank's share of the batch
            if log and ranks.is_main:
                log(step, losses)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if step % cfg.save_every == 0 or step == cfg.steps:
                rngs = distributed.all_gather(ranks, gen.get_state())
                if ranks.is_main:
                    opt_tensors, meta = _optimizer_tensors(opt)
                    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_tensors,
                               "rng": rngs[0], **{f"rng.{r}": rngs[r] for r in range(1, len(rngs))}}  # fmt: skip
                    save_checkpoint(state_dir, tensors, {"kind": "prm_train_state", "step": step,
                                                         "world_size": ranks.world_size, **meta})  # fmt: skip
    model.eval()
    wall = time.perf_counter() - start
    counts = distributed.all_gather(ranks, torch.tensor([len(demos.lengths), len(demos.frames)]))
    episodes, frames_total = (int(n) for n in torch.stack(counts).sum(0))
    summary = {"steps": step, "train_wall_time_s": round(wall, 1), "frames": frames_total, "episodes": episodes,
               "final_losses": losses, "resumed_from_step": resumed_from, "world_size": ranks.world_size,
               "global_batch_size": cfg.batch_size, "batch_size_per_rank": batch}  # fmt: skip
    if ranks.is_main:
        model.save(out, extra={"name": name, "training": summary})
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    distributed.barrier(ranks)  # the model is on disk before any rank moves on (e.g. to evaluate it)
    return model, summary


def _all_instructions(data: list[str | Path], known: list[str] | None) -> list[str]:
    """The known instructions, then every file's in file order: the same list on every rank."""
    instructions = list(known or [])
    for path in data:
        with DemoReader(path) as reader:
            if reader.instruction not in instructions:
                instructions.append(reader.instruction)
    return instructions
