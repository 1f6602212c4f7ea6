"""Reward shaping: potential-based shaping (PBRS) of a batched env's reward with a potential Φ(s).

    env = sim.make("push_cube", num_envs=64, cameras=("front", "wrist"))
    phi = build_potential("distilled", env, demos=["demos/push.h5"], label_name="prm")
    shaped = ShapedEnv(env, phi, mode="pbrs", gamma=0.99, learner_gamma=0.99)
    vec = RslRlVecEnv(shaped)   # or any code written for sim.BatchedEnv

Potentials: ``privileged`` (the simulator's progress), ``model`` (a reward model on rendered frames),
``distilled`` (a small network on the observation, fitted to a reward model's labels; ONI-style).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from robo_reward.models import load_reward_model
from robo_reward.shaping.distill import DistilledPotential
from robo_reward.shaping.errors import ShapingError
from robo_reward.shaping.pbrs import MODES, ShapedEnv, direct_reward, shaped_reward
from robo_reward.shaping.potentials import ModelPotential, Potential, PrivilegedPotential, Refreshable

POTENTIALS = ("privileged", "model", "distilled")


def build_potential(
    kind: str,
    env,
    *,
    model_dir: str | Path | None = None,
    demos: Sequence[str | Path] = (),
    label_name: str = "prm",
    instruction: str | None = None,
) -> Potential:
    """A potential of ``kind`` for ``env``, checked against it (cameras, image size, observation size).

    ``model`` loads the reward model in ``model_dir`` and scores ``instruction`` (default: the env's);
    ``distilled`` fits a network on ``demos`` labelled under ``/labels/<label_name>``. Bad input raises a
    one-line error (:class:`ShapingError`, or the loader's / demo reader's).
    """
    if kind not in POTENTIALS:
        raise ShapingError(f"unknown potential {kind!r}; choose one of {', '.join(POTENTIALS)}")
    if kind == "privileged":
        potential: Potential = PrivilegedPotential()
    elif kind == "model":
        if model_dir is None:
            raise ShapingError("potential 'model' needs model_dir (a saved reward-model folder)")
        model = load_reward_model(model_dir, cameras=env.cameras)
        potential = ModelPotential(model, instruction or env.instruction)
    else:
        if not demos:
            raise ShapingError(f"potential 'distilled' needs demos labelled under /labels/{label_name}")
        potential = DistilledPotential(env.obs_dim)
        potential.fit_from_demos(list(demos), label_name)
    potential.attach(env)
    return potential


__all__ = [
    "MODES",
    "POTENTIALS",
    "DistilledPotential",
    "ModelPotential",
    "Potential",
    "PrivilegedPotential",
    "Refreshable",
    "ShapedEnv",
    "ShapingError",
    "build_potential",
    "direct_reward",
    "shaped_reward",
]
