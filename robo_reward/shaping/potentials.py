"""Potentials Φ(s) for shaping: the simulator's privileged progress, or a reward model on rendered frames.

A potential scores the states of a batched env in roughly [0, 1], in two places: the envs' current
states (after any auto-reset), and the states a step reached before its auto-reset — gone from the
simulator by the time the step returns, so they come from ``info`` (``progress``, ``final_obs``, or the
``final_frames`` the env renders when ``capture_final_frames`` is on). The distilled potential (a cheap
network on the policy observation, fitted to a reward model) is in :mod:`robo_reward.shaping.distill`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from robo_reward.models.protocol import RewardModel
from robo_reward.shaping.errors import ShapingError


@runtime_checkable
class Potential(Protocol):
    """Φ over a batched env's states; every tensor float32 on ``env.device``."""

    def attach(self, env) -> None:
        """Check that this potential can score ``env``'s states (one-line :class:`ShapingError` if not) and
        switch on what it needs from the env; idempotent."""
        ...

    def current(self, env) -> torch.Tensor:
        """Φ (N,) of the envs' current, post-reset states."""
        ...

    def final(self, env, info: dict, ids: torch.Tensor) -> torch.Tensor:
        """Φ (len(ids),) of the pre-reset states the last step reached, for the envs ``ids`` int64 (K,)."""
        ...


@runtime_checkable
class Refreshable(Protocol):
    """A potential that can be re-fitted online on states labelled by a reward model (ONI-style)."""

    def refresh(self, env, model: RewardModel, num_envs: int, steps: int) -> dict: ...


class PrivilegedPotential:
    """The simulator's own progress: an upper bound for what a learned potential can give."""

    def attach(self, env) -> None:
        """Any batched env has privileged progress."""

    def current(self, env) -> torch.Tensor:
        return env.privileged()["progress"].float()

    def final(self, env, info: dict, ids: torch.Tensor) -> torch.Tensor:
        return info["progress"][ids].float()


def check_env_for_model(model: RewardModel, env) -> list[int]:
    """The indices of ``model.cameras`` in ``env.cameras`` (the V axis of ``env.render()``); a one-line
    :class:`ShapingError` when the env does not render them, or renders a size the model does not take."""
    missing = [camera for camera in model.cameras if camera not in env.cameras]
    if missing:
        raise ShapingError(
            f"the reward model was trained on cameras {list(model.cameras)}; the env renders {list(env.cameras)} "
            f"(make it with cameras={list(model.cameras)})"
        )
    size = model.image_size
    if not model.resizes and tuple(env.render_size) != (size, size):
        raise ShapingError(
            f"the reward model takes {size}x{size} frames; the env renders {env.render_size[0]}x{env.render_size[1]} "
            f"(make it with render_size=({size}, {size}))"
        )
    return [list(env.cameras).index(camera) for camera in model.cameras]


def score_frames(model: RewardModel, instruction: str, frames: torch.Tensor, views: list[int]) -> torch.Tensor:
    """The model's progress (B,) float32 for rendered frames uint8 (B, V_env, H, W, 3), keeping ``views``."""
    if views != list(range(frames.shape[1])):
        frames = frames[:, views]
    return model.progress(frames.cpu(), instruction, cameras=list(model.cameras)).float()


class ModelPotential:
    """Φ(s) = a reward model's progress on the env's rendered views of s.

    The env must render the model's cameras (any order, extra ones are dropped) at the model's image
    size (unless the model resizes frames); :meth:`attach` checks that and turns on the env's
    ``capture_final_frames``, the only way to see a truncated episode's last state.
    """

    def __init__(self, model: RewardModel, instruction: str) -> None:
        model.task_id(instruction)  # an instruction the model cannot score: fail here, in one line
        self.model = model.eval()
        self.instruction = instruction

    def attach(self, env) -> None:
        check_env_for_model(self.model, env)
        env.capture_final_frames = True

    def current(self, env) -> torch.Tensor:
        views = check_env_for_model(self.model, env)
        return score_frames(self.model, self.instruction, env.render(), views).to(env.device)

    def final(self, env, info: dict, ids: torch.Tensor) -> torch.Tensor:
        if "final_frames" not in info:
            raise ShapingError("step info has no final_frames: set env.capture_final_frames = True (attach does)")
        position = torch.full((env.num_envs,), -1, dtype=torch.int64, device=info["final_ids"].device)
        position[info["final_ids"]] = torch.arange(len(info["final_ids"]), device=position.device)
        rows = position[ids.to(position.device)]
        if (rows < 0).any():
            raise ShapingError(f"envs {ids[rows < 0].tolist()[:8]} did not end this step: no final frames for them")
        views = check_env_for_model(self.model, env)
        return score_frames(self.model, self.instruction, info["final_frames"][rows], views).to(env.device)
