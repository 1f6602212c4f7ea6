"""humanoid: gymnasium's Humanoid model (Humanoid-v5's MJCF and frame skip) with three goals.

``goal: run`` is Humanoid-v5's task: forward velocity, a healthy bonus and a control cost. ``kneel`` and
``arms_raised`` are goals in VLM-RM's style, easy to say or show and awkward to write as a reward; their
success is measured from the privileged pose (torso height and uprightness, knee heights, hand heights
against the head), so a vision or language reward model can be scored against it. Their dense ``goal`` term
is that pose score, 1 - tanh(k · pose error), for reference and ablations.

The observation is Humanoid-v5's position and velocity part (torso height and orientation, joint angles,
all velocities: 45 dims) without the centre-of-mass inertia, velocities and contact forces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from sim import randomize
from sim.randomize import SceneParts
from sim.tasks.base import Evaluation, Task, torque_policy_interface

XML = Path(__file__).resolve().parents[2] / "assets" / "humanoid.xml"
GOALS = ("run", "kneel", "arms_raised")
CTRL_RANGE = 0.4  # the motors' ctrlrange: action 1 is control 0.4 (times each motor's gear)
INSTRUCTIONS = {
    "run": "run forward",
    "kneel": "kneel down on the ground",
    "arms_raised": "raise both arms above the head",
}
CAPTIONS = {
    "run": (
        "the humanoid stands near the start",
        "the humanoid has run partway forward",
        "the humanoid has run far forward",
    ),
    "kneel": (
        "the humanoid is standing",
        "the humanoid is lowering itself toward its knees",
        "the humanoid kneels with its knees on the ground and its torso upright",
    ),
    "arms_raised": (
        "the humanoid stands with its arms down",
        "the humanoid is lifting its arms",
        "the humanoid stands with both hands raised above its head",
    ),
}


class Humanoid(Task):
    name = "humanoid"
    gymnasium_peer = "Humanoid-v5"
    cameras = ("track", "front")
    instruction = INSTRUCTIONS["run"]  # the default goal's; an instance carries its goal's
    stage_names = ("start", "partway", "achieved")
    stage_captions = (
        "the humanoid is at the start of its goal",
        "the humanoid is partway to its goal",
        "the humanoid has achieved its goal",
    )
    obs_dim = 45
    act_dim = 17
    needs_kinematics = True  # head, hand and knee sites for the pose goals
    randomize_parts = SceneParts(floor_geoms=("floor",), robot_bodies=("torso",), mass_bodies=("torso",))

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "goal": "run",  # run | kneel | arms_raised
            "substeps": 5,  # Humanoid-v5 frame_skip: 5 x 3 ms = 15 ms control steps
            "max_episode_steps": 1000,
            "reset_noise": 0.01,  # uniform qpos and qvel noise (Humanoid-v5's reset_noise_scale)
            # m, torso height outside this range terminates (run: Humanoid-v5's; kneel needs a lower bound)
            "healthy_z": {"run": [1.0, 2.0], "kneel": [0.6, 2.0], "arms_raised": [1.0, 2.0]},
            "run_distance": 5.0,  # m along +x that counts as success for run (progress = x / this)
            "kneel_torso_z": [0.7, 1.1],  # m, torso height range of a kneel
            "knee_z": 0.15,  # m, a knee this low is on the ground (kneel: both)
            "upright": 0.8,  # minimum z component of the torso's up axis (kneel, arms_raised)
            "hands_above_head": 0.1,  # m, both hands this far above the head (arms_raised)
            "tanh_scale": 3.0,  # 1/m, sharpness k of the pose score 1 - tanh(k error)
            "reward": {
                "goal": 1.25,  # run: forward velocity (m/s, Humanoid-v5's weight); kneel/arms_raised: pose score
                "healthy": 5.0,  # 1 while the torso height is in range
                "ctrl_cost": 0.1,  # -|a|^2
            },
            # domain randomisation, off (sim/randomize.py); no table, so no distractors
            "randomize": randomize.default_config(),
        }

    def __init__(self, num_envs: int, config: dict[str, Any] | None = None) -> None:
        super().__init__(num_envs, config)
        self.goal = self.config["goal"]
        if self.goal not in GOALS:
            raise ValueError(f"unknown humanoid goal {self.goal!r}; available: {', '.join(GOALS)}")
        self.instruction = INSTRUCTIONS[self.goal]
        self.stage_captions = CAPTIONS[self.goal]

    def build_model(self) -> mujoco.MjModel:
        model = mujoco.MjModel.from_xml_path(str(XML))
        model.vis.quality.shadowsize = 0
        return model

    def bind(self, physics) -> None:
        super().bind(physics)
        model = physics.model
        self.init_qpos = model.qpos0.copy()
        self.sites = {
            name: model.site(name).id for name in ("head", "left_hand", "right_hand", "left_knee", "right_knee")
        }
        self.prev_x = np.zeros(self.num_envs)
        self.start_error = np.ones(self.num_envs)
        self.dt = model.opt.timestep * self.substeps

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        model, noise = self.physics.model, float(self.config["reset_noise"])
        qpos = self.init_qpos + rng.uniform(-noise, noise, size=(len(ids), model.nq))
        qvel = rng.uniform(-noise, noise, size=(len(ids), model.nv))
        for k, i in enumerate(ids):
            data = self.physics.datas[i]
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = qpos[k], qvel[k]
        self.physics.ctrl[ids] = 0.0

    def after_reset(self, ids: np.ndarray) -> None:
        self.start_error[ids] = np.maximum(self.pose_error()[ids], 1e-3)

    def apply_action(self, action: np.ndarray) -> None:
        self.physics.ctrl[:] = action * CTRL_RANGE

    def before_step(self) -> None:
        self.prev_x = self.physics.qpos[:, 0].copy()

    def observe(self) -> np.ndarray:
        return np.concatenate([self.physics.qpos[:, 2:], self.physics.qvel], axis=1).astype(np.float32)

    # -- pose ---------------------------------------------------------------------------------
    def site(self, name: str) -> np.ndarray:
        return self.physics.site_xpos[:, self.sites[name]]

    def uprightness(self) -> np.ndarray:
        """z component of the torso's up axis (N,): 1 upright, 0 lying."""
        x, y = self.physics.qpos[:, 4], self.physics.qpos[:, 5]
        return 1.0 - 2.0 * (x * x + y * y)

    def pose_error(self) -> np.ndarray:
        """How far (m, roughly) the pose is from the goal's; 0 when every success condition holds. run: 0."""
        cfg = self.config
        torso_z = self.physics.qpos[:, 2]
        tilt = np.maximum(cfg["upright"] - self.uprightness(), 0.0)
        if self.goal == "kneel":
            low, high = cfg["kneel_torso_z"]
            knees = np.maximum(
                np.stack([self.site("left_knee")[:, 2], self.site("right_knee")[:, 2]]) - cfg["knee_z"], 0
            )
            return knees.sum(axis=0) + np.maximum(torso_z - high, 0.0) + np.maximum(low - torso_z, 0.0) + tilt
        if self.goal == "arms_raised":
            above = self.site("head")[:, 2] + cfg["hands_above_head"]
            hands = np.stack([self.site("left_hand")[:, 2], self.site("right_hand")[:, 2]])
            return np.maximum(above - hands, 0.0).sum(axis=0) + tilt
        return np.zeros(self.num_envs)

    def policy_interface(self) -> dict[str, Any]:
        """Observation names from the model's joints; actions are the 17 motors' controls, in actuator order."""
        model = self.physics.model if self.physics is not None else self.build_model()
        return torque_policy_interface(model, model.actuator_gear[:, 0] * CTRL_RANGE)

    # -- reward and evaluation ----------------------------------------------------------------
    def update(self) -> None:
        low, high = self.config["healthy_z"][self.goal]
        z = self.physics.qpos[:, 2]
        self._healthy = (z >= low) & (z <= high)
        self._error = self.pose_error()

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        if self.goal == "run":
            goal = (self.physics.qpos[:, 0] - self.prev_x) / self.dt
        else:
            goal = 1.0 - np.tanh(self.config["tanh_scale"] * self._error)
        return {
            "goal": goal,
            "healthy": self._healthy.astype(np.float64),
            "ctrl_cost": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        if self.goal == "run":
            progress = np.clip(self.physics.qpos[:, 0] / self.config["run_distance"], 0.0, 1.0)
            success = progress >= 1.0
        else:
            success = self._error <= 0.0
            progress = np.clip(1.0 - self._error / self.start_error, 0.0, 1.0)
            progress[success] = 1.0
        stage = (progress >= 0.5).astype(np.int64)
        stage[success] = 2
        return Evaluation(success, progress, stage, ~self._healthy)
