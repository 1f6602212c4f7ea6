"""Reward models: the process reward model (PRM), the vision-language reward (VLM-RM) and ensembles of PRMs.

Every model implements :class:`~robo_reward.models.protocol.RewardModel`: ``model.progress(frames uint8
(B, V, H, W, 3), instruction) -> (B,)`` in [0, 1], ``predict`` adds a success estimate, ``model.save(dir)``
writes ``weights.safetensors`` + ``config.json``; :func:`load` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from robo_reward.models.checkpoint import CheckpointError, load_checkpoint
from robo_reward.models.protocol import RewardModel


def load(folder: str | Path) -> RewardModel:
    """Rebuild a saved reward model from ``folder`` (no pickle is ever read): a PRM, a VL reward or an
    ensemble of them (:mod:`robo_reward.models.ensemble`)."""
    from robo_reward.models.ensemble import build

    tensors, config = load_checkpoint(folder)
    return build(config["kind"], tensors, config, Path(folder) / "config.json")


def load_reward_model(folder: str | Path, cameras: Sequence[str] | None = None) -> RewardModel:
    """:func:`load`, plus one-line :class:`CheckpointError` s for what a caller with an env needs to know
    first: ``folder`` is not a model folder, or the model needs cameras that ``cameras`` (what the env
    renders) lacks — a model scored on fewer views than it was trained on degrades silently otherwise."""
    if not Path(folder).is_dir():
        raise CheckpointError(f"{folder}: no such reward-model folder")
    model = load(folder)
    if cameras is not None and any(camera not in cameras for camera in model.cameras):
        raise CheckpointError(
            f"reward model {folder} was trained on cameras {list(model.cameras)}; the env renders {list(cameras)}"
        )
    return model


def model_name(folder: str | Path) -> str:
    """The name a model's labels are stored under: ``name`` in its ``config.json`` (set by
    ``robo-train-reward name=...``), else the folder's name."""
    import json

    try:
        name = json.loads((Path(folder) / "config.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else Path(folder).resolve().name


__all__ = ["CheckpointError", "RewardModel", "load", "load_reward_model", "model_name"]
