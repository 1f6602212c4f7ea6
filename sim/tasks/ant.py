"""ant: forward locomotion with gymnasium's Ant model (same MJCF, 5 physics steps per control step).

The observation is Ant-v5's without contact forces (torso position without x/y, joint angles and all
velocities: 27 dims); contact forces would need ``mj_rnePostConstraint`` on every step. Reward terms
follow Ant-v5 (forward velocity, healthy bonus, control cost); the episode terminates when the
torso leaves the healthy height range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np

from sim import randomize
from sim.randomize import SceneParts
from sim.tasks.base import Evaluation, Task, torque_policy_interface

ANT_XML = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "ant.xml"


class Ant(Task):
    name = "ant"
    gymnasium_peer = "Ant-v5"
    cameras = ("track",)
    instruction = "walk forward"
    stage_names = ("quarter_1", "quarter_2", "quarter_3", "quarter_4", "reached")
    stage_captions = (
        "the ant robot stands near the start",
        "the ant robot has walked a little forward",
        "the ant robot has walked halfway",
        "the ant robot is almost at the finish",
        "the ant robot has walked far forward",
    )
    obs_dim = 27
    act_dim = 8
    randomize_parts = SceneParts(floor_geoms=("floor",), robot_bodies=("torso",), mass_bodies=("torso",))

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "substeps": 5,  # Ant-v5 frame_skip: 5 x 10 ms = 20 Hz
            "max_episode_steps": 1000,
            "healthy_z": [0.2, 1.0],  # m, torso height outside this range terminates
            "reset_noise": 0.1,  # uniform qpos noise, and std of normal qvel noise
            "goal_distance": 5.0,  # m travelled along +x that counts as success (progress = x / this)
            "reward": {
                "forward_velocity": 1.0,  # dx/dt of the torso, m/s
                "healthy": 1.0,  # 1 while the torso height is in range
                "ctrl_cost": 0.5,  # -|a|^2
            },
            # domain randomisation, off (sim/randomize.py); no table, so no distractors
            "randomize": randomize.default_config(),
        }

    def build_model(self) -> mujoco.MjModel:
        model = mujoco.MjModel.from_xml_path(str(ANT_XML))
        model.vis.quality.shadowsize = 0
        return model

    def bind(self, physics) -> None:
        super().bind(physics)
        self.init_qpos = physics.model.qpos0.copy()
        self.prev_x = np.zeros(self.num_envs)
        self.dt = physics.model.opt.timestep * self.substeps

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        model, noise = self.physics.model, float(self.config["reset_noise"])
        qpos = self.init_qpos + rng.uniform(-noise, noise, size=(len(ids), model.nq))
        qvel = noise * rng.standard_normal(size=(len(ids), model.nv))
        for k, i in enumerate(ids):
            data = self.physics.datas[i]
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = qpos[k], qvel[k]
        self.physics.ctrl[ids] = 0.0

    def apply_action(self, action: np.ndarray) -> None:
        self.physics.ctrl[:] = action

    def before_step(self) -> None:
        self.prev_x = self.physics.qpos[:, 0].copy()

    def observe(self) -> np.ndarray:
        return np.concatenate([self.physics.qpos[:, 2:], self.physics.qvel], axis=1).astype(np.float32)

    def policy_interface(self) -> dict[str, Any]:
        """Observation names from the model's joints; actions are the 8 motors' torques, in actuator order.

        ``joints`` lists the hinge joints in actuator order, so ``joints.names[i]`` is the joint ``action[i]``
        drives (the observation follows the model's joint order instead, as its names say).
        """
        model = self.physics.model if self.physics is not None else self.build_model()
        return torque_policy_interface(model, model.actuator_gear[:, 0])

    def update(self) -> None:
        low, high = self.config["healthy_z"]
        z = self.physics.qpos[:, 2]
        self._healthy = (z >= low) & (z <= high)

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "forward_velocity": (self.physics.qpos[:, 0] - self.prev_x) / self.dt,
            "healthy": self._healthy.astype(np.float64),
            "ctrl_cost": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        progress = np.clip(self.physics.qpos[:, 0] / self.config["goal_distance"], 0.0, 1.0)
        success = progress >= 1.0
        stage = np.minimum((progress * 4).astype(np.int64), 3)
        stage[success] = 4
        return Evaluation(success, progress, stage, ~self._healthy)
