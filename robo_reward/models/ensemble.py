"""A reward ensemble: several trained PRMs scored as one, their progress and success averaged.

Off the training distribution one training seed's PRM can sit far from another's (never-seen looks: VOC 0.56
to 0.83 for three seeds of one recipe); their mean is steadier and better (0.80, README *Shifted evaluation*)
at the members' summed inference cost. It is one checkpoint like any model — every member's weights in
one ``weights.safetensors`` under ``members.<i>.``, their configs in ``config.json`` — so ``label``,
``eval`` and ``robo-train reward.model=`` take it as they take a single model.

    robo-reward ensemble runs/reward/prm/seed0 runs/reward/prm/seed1 runs/reward/prm/seed2 --out prm_ensemble
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from robo_reward.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robo_reward.models.protocol import progress_in_eval_mode

KIND = "ensemble"


def build(kind: str, tensors: dict[str, torch.Tensor], config: dict, where: str | Path) -> nn.Module:
    """A model of ``kind`` from its weights and config (what :func:`robo_reward.models.load` dispatches on)."""
    if kind == "prm":
        from robo_reward.models.prm import ProgressRewardModel

        return ProgressRewardModel.from_checkpoint(tensors, config)
    if kind == "vlm":
        from robo_reward.models.vlm import VLMReward

        return VLMReward.from_checkpoint(tensors, config)
    if kind == KIND:
        return RewardEnsemble.from_checkpoint(tensors, config, where)
    raise CheckpointError(f"{where}: unknown model kind {kind!r}")


class RewardEnsemble(nn.Module):
    """Members that see the same cameras at the same image size; ``predict`` is the mean of theirs."""

    def __init__(self, members: list[nn.Module], configs: list[dict], where: str | Path = "ensemble") -> None:
        super().__init__()
        if len(members) < 2:
            raise CheckpointError(f"{where}: an ensemble needs at least 2 members, got {len(members)}")
        first = members[0]
        for index, member in enumerate(members[1:], start=1):
            theirs = (list(member.cameras), member.image_size, member.resizes)
            ours = (list(first.cameras), first.image_size, first.resizes)
            if theirs != ours:
                raise CheckpointError(
                    f"{where}: member {index} takes cameras {theirs[0]} at {theirs[1]} px, member 0 cameras "
                    f"{ours[0]} at {ours[1]} px; an ensemble's members must see the same frames"
                )
        self.members = nn.ModuleList(members)
        self.member_configs = configs
        self.infer_frames = min(getattr(member, "infer_frames", 0) for member in members)  # label's warm-up slice

    @classmethod
    def from_folders(cls, folders: list[str | Path]) -> RewardEnsemble:
        members, configs = [], []
        for folder in folders:
            if not Path(folder).is_dir():
                raise CheckpointError(f"{folder}: no such reward-model folder")
            tensors, config = load_checkpoint(folder)
            if config.get("kind") != "prm":  # a VL reward saves its CLIP's weights, not its module's: not mixed in
                raise CheckpointError(f"{Path(folder) / 'config.json'}: a {config.get('kind')!r} model; an ensemble "
                                      "takes process reward models (kind 'prm')")  # fmt: skip
            members.append(build(config["kind"], tensors, config, Path(folder) / "config.json"))
            configs.append(config)
        return cls(members, configs, ", ".join(map(str, folders)))

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], config: dict, where: str | Path) -> RewardEnsemble:
        members = []
        for index, member_config in enumerate(config["members"]):
            prefix = f"members.{index}."
            own = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
            members.append(build(member_config["kind"], own, member_config, where))
        return cls(members, config["members"], where).eval()

    # -- the reward-model contract (robo_reward.models.protocol.RewardModel) -------------------------
    @property
    def cameras(self) -> list[str]:
        return list(self.members[0].cameras)

    @property
    def image_size(self) -> int:
        return self.members[0].image_size

    @property
    def resizes(self) -> bool:
        return self.members[0].resizes

    def task_id(self, instruction: str) -> int:
        """Every member must be able to score the instruction (each raises its own one-line error)."""
        ids = [member.task_id(instruction) for member in self.members]
        return ids[0]

    @torch.inference_mode()
    def predict(
        self, frames, instruction: str, cameras: list[str] | None = None, bf16: bool = False
    ) -> dict[str, torch.Tensor]:
        outs = [member.predict(frames, instruction, cameras, bf16) for member in self.members]
        return {key: torch.stack([out[key] for out in outs]).mean(0) for key in ("progress", "success")}

    def progress(self, frames, instruction: str, cameras: list[str] | None = None) -> torch.Tensor:
        return progress_in_eval_mode(self, frames, instruction, cameras)

    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        members = [{key: value for key, value in config.items() if key != "name"} for config in self.member_configs]
        return save_checkpoint(folder, self.state_dict(), {"kind": KIND, "members": members, **(extra or {})})
