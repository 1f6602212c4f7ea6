"""The reward-model contract: what ``label``, ``eval`` and reward shaping may rely on, and nothing more.

Every reward model (the PRM, the VL reward, any later one) implements :class:`RewardModel`; consumers
type against it instead of reaching into a model's ``config``. ``isinstance(model, RewardModel)`` checks
that the members exist (``typing.runtime_checkable`` does not check signatures).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class RewardModel(Protocol):
    """Scores multi-view frames of a task against an instruction.

    ``cameras`` are the view names the model was trained on, in the V-axis order it expects when no
    ``cameras`` argument is given. ``image_size`` is the side of the square frames it takes;
    ``resizes`` tells whether frames of another size are resized to it (True) or refused (False).
    """

    @property
    def cameras(self) -> list[str]: ...

    @property
    def image_size(self) -> int: ...

    @property
    def resizes(self) -> bool: ...

    def task_id(self, instruction: str) -> int:
        """The model's index for ``instruction``; a one-line ``ValueError`` when it cannot score it."""
        ...

    def progress(self, frames: torch.Tensor, instruction: str, cameras: list[str] | None = None) -> torch.Tensor:
        """uint8 frames (B, V, H, W, 3) → progress float32 (B,) in [0, 1]. ``cameras`` names the V views
        when they are not ``self.cameras`` in order (a subset, say)."""
        ...

    def predict(
        self, frames: torch.Tensor, instruction: str, cameras: list[str] | None = None, bf16: bool = False
    ) -> dict[str, torch.Tensor]:
        """``{"progress": (B,), "success": (B,)}``, both float32 in [0, 1]; ``success`` is the model's own
        estimate that the task is finished (never a copy of progress)."""
        ...

    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write ``weights.safetensors`` + ``config.json`` into ``folder`` (``extra`` joins the config)."""
        ...

    def state_dict(self) -> Mapping[str, torch.Tensor]:
        """The weights (``nn.Module``'s): the labeller fingerprints them to resume only its own journal."""
        ...

    def eval(self) -> RewardModel:
        """Inference mode (``nn.Module``'s): no dropout, no batch-statistics updates."""
        ...


def progress_in_eval_mode(
    model: RewardModel, frames: torch.Tensor, instruction: str, cameras: list[str] | None = None
) -> torch.Tensor:
    """``model.progress`` for every model: ``predict``'s progress with the model in eval mode, and its
    training mode as it was afterwards (a caller may be half-way through fine-tuning it)."""
    was_training = model.training
    model.eval()
    try:
        return model.predict(frames, instruction, cameras)["progress"]
    finally:
        model.train(was_training)
