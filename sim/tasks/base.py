"""The task interface: everything task-specific that the batched env delegates to.

A task owns its scene, observation, named reward terms, success, privileged progress and stage,
termination, per-episode randomisation and (for manipulation) a batched scripted expert. All methods
are vectorised over envs and read the batched state arrays of :class:`sim.physics.ThreadedPhysics`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np

from sim.physics import ThreadedPhysics
from sim.randomize import SceneParts


@dataclass
class Evaluation:
    """Per-env outcome of the state a step reached, before any auto-reset. Shapes (N,)."""

    success: np.ndarray  # bool
    progress: np.ndarray  # float in [0, 1], privileged
    stage: np.ndarray  # int, index into Task.stage_names
    terminated: np.ndarray  # bool: a true terminal state (not a time limit)


class Task(ABC):
    """Base class of the tasks in ``sim/tasks/``; one subclass per file (see :mod:`sim.tasks`).

    ``gym_id`` defaults to ``robo_reward/<CamelCaseName>-v0``.
    """

    name: ClassVar[str]
    gym_id: ClassVar[str]
    cameras: ClassVar[tuple[str, ...]]
    stage_names: ClassVar[tuple[str, ...]]
    # One sentence per stage describing what a camera sees: captions for vision-language fine-tuning.
    stage_captions: ClassVar[tuple[str, ...]]
    obs_dim: ClassVar[int]
    act_dim: ClassVar[int]
    instruction: ClassVar[str]
    # Set by tasks whose observation or expert needs sites and Jacobians after every step.
    needs_kinematics: ClassVar[bool] = False
    # gymnasium's own env of the same model and frame skip, if any: the bench's peer (else our single env)
    gymnasium_peer: ClassVar[str | None] = None
    # What domain randomisation may touch in this task's scene; ranges in default_config()["randomize"].
    randomize_parts: ClassVar[SceneParts] = SceneParts()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "gym_id" not in cls.__dict__:
            cls.gym_id = default_gym_id(cls.name)

    @classmethod
    def has_expert(cls) -> bool:
        """Whether the task has a batched scripted expert (overrides :meth:`expert`)."""
        return cls.expert is not Task.expert

    def __init__(self, num_envs: int, config: dict[str, Any] | None = None) -> None:
        self.num_envs = num_envs
        self.config = merge_config(self.default_config(), config or {})
        self.physics: ThreadedPhysics | None = None

    @staticmethod
    @abstractmethod
    def default_config() -> dict[str, Any]:
        """Every tunable number of the task, reward weights under ``"reward"``."""

    @abstractmethod
    def build_model(self) -> mujoco.MjModel: ...

    def bind(self, physics: ThreadedPhysics) -> None:
        """Look up ids in the compiled model; called once the physics exists."""
        self.physics = physics

    @property
    def substeps(self) -> int:
        return int(self.config["substeps"])

    @property
    def max_episode_steps(self) -> int:
        return int(self.config["max_episode_steps"])

    @abstractmethod
    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        """Randomise the envs ``ids`` (set qpos/qvel/mocap/ctrl on their MjData and episode variables)."""

    def after_reset(self, ids: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Record episode constants that need the reset state's kinematics (e.g. start distances)."""

    @abstractmethod
    def apply_action(self, action: np.ndarray) -> None:
        """Turn normalised actions (N, act_dim) into actuator targets in ``physics.ctrl``."""

    def before_step(self) -> None:  # noqa: B027 - optional hook
        """Record what a reward term needs from the state before the step (e.g. position for velocity)."""

    def update(self) -> None:  # noqa: B027 - optional hook
        """Compute, once per state, what the reward terms, the evaluation and the observation share (distances...).

        The env calls it after every physics step and after every reset, before any of those three.
        """

    @abstractmethod
    def observe(self) -> np.ndarray:
        """Policy observation (N, obs_dim) float32 of the current state."""

    @abstractmethod
    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        """Raw, unweighted dense reward terms, each (N,); weights live in ``config["reward"]``."""

    @abstractmethod
    def evaluate(self) -> Evaluation: ...

    def expert(self, obs: np.ndarray) -> np.ndarray:
        """Batched scripted expert action (N, act_dim) for the current state."""
        raise NotImplementedError(f"task {self.name!r} has no scripted expert")

    def policy_interface(self) -> dict[str, Any]:
        """What a robot needs to drive an exported policy (``robo-reward export`` writes it into spec.json).

        ``observation_names``: obs_dim strings, one per :meth:`observe` entry in order; ``action``: ``mode``
        (str), ``names`` and ``scale`` (act_dim each: physical units per unit action) and ``semantics`` (text);
        ``joints``: ``names``, ``lower``, ``upper`` (rad) of the joints the actions drive. Plain JSON data;
        works before the task is bound to physics.
        """
        raise NotImplementedError(f"task {self.name!r} does not describe its policy interface")


def default_gym_id(name: str) -> str:
    """``push_cube`` → ``robo_reward/PushCube-v0``."""
    return "robo_reward/" + "".join(part.capitalize() for part in name.split("_")) + "-v0"


def merge_config(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``overrides`` into a copy of ``defaults``; unknown keys are an error."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if key not in merged:
            raise KeyError(f"unknown task config key {key!r}; known: {sorted(merged)}")
        if isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def torque_policy_interface(model: mujoco.MjModel, scale: np.ndarray) -> dict[str, Any]:
    """:meth:`Task.policy_interface` of a floating-base body driven by torque motors (ant, humanoid).

    Observation: the free joint's qpos[2:7], the hinges' positions, the free joint's qvel (linear in the world
    frame, angular in the torso frame), the hinges' velocities. ``action[i]`` times ``scale[i]`` N·m is
    motor ``i``'s torque; ``joints`` lists the driven joints in actuator order (the observation follows the
    model's joint order instead, as its names say)."""
    hinges = [model.joint(j).name for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    torso_pos = ["torso_z", "torso_qw", "torso_qx", "torso_qy", "torso_qz"]
    torso_vel = ["torso_vx", "torso_vy", "torso_vz", "torso_wx", "torso_wy", "torso_wz"]
    driven = [int(model.actuator_trnid[a, 0]) for a in range(model.nu)]
    return {
        "observation_names": [*torso_pos, *(f"{h}_pos" for h in hinges), *torso_vel, *(f"{h}_vel" for h in hinges)],
        "action": {
            "mode": "joint_torque",
            "names": [f"{model.joint(j).name}_torque" for j in driven],
            "scale": np.asarray(scale, dtype=float).tolist(),
            "semantics": "action[i] in [-1, 1] is motor i's control: torque = scale[i] N·m × action[i] on the "
            "joint joints.names[i], held for one control step",
        },
        "joints": {
            "names": [model.joint(j).name for j in driven],
            "lower": [float(model.jnt_range[j, 0]) for j in driven],
            "upper": [float(model.jnt_range[j, 1]) for j in driven],
        },
    }
