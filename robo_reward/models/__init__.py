"""Reward models: the process reward model (PRM) and the vision-language reward (VLM-RM).

Every model follows one contract: ``model.progress(frames uint8 (B, V, H, W, 3), instruction) -> (B,)``
in [0, 1]; ``model.save(dir)`` writes ``weights.safetensors`` + ``config.json``; :func:`load` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

from robo_reward.models.checkpoint import CheckpointError, load_checkpoint


def load(folder: str | Path):
    """Rebuild a saved reward model from ``folder`` (no pickle is ever read)."""
    tensors, config = load_checkpoint(folder)
    kind = config["kind"]
    if kind == "prm":
        from robo_reward.models.prm import ProgressRewardModel

        return ProgressRewardModel.from_checkpoint(tensors, config)
    if kind == "vlm":
        from robo_reward.models.vlm import VLMReward

        return VLMReward.from_checkpoint(tensors, config)
    raise CheckpointError(f"{Path(folder) / 'config.json'}: unknown model kind {kind!r}")


__all__ = ["CheckpointError", "load"]
