"""reach: bring the gripper's tool centre point to a random target in the workspace."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sim import randomize
from sim.arrays import row_norm
from sim.tasks.base import Evaluation
from sim.tasks.manipulation import ARM_SCENE_PARTS, ArmTask


class Reach(ArmTask):
    name = "reach"
    scene = "reach"
    instruction = "move the gripper to the green ball"
    stage_names = ("approach", "at_target")
    stage_captions = ("the gripper moves toward the green ball", "the gripper is at the green ball")
    randomize_parts = replace(ARM_SCENE_PARTS, object_geoms=("target",))  # no loose object: no mass to vary
    obs_dim = 23  # arm (17) + target (3) + target - tcp (3)

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "substeps": 10,  # 10 x 5 ms physics = 20 Hz control
            "max_episode_steps": 100,
            "action_mode": "joint_delta",  # joint_delta: joint target deltas; ee_delta: tcp deltas, IK in the env
            "success_radius": 0.02,  # m, tcp to target
            "terminate_on_success": True,
            "init_joint_noise": 0.1,  # rad, uniform around home
            "target_low": [0.30, -0.25, 0.05],  # m, workspace box for targets
            "target_high": [0.60, 0.25, 0.30],
            "reward": {
                "distance": 1.0,  # -|tcp - target|
                "success": 5.0,  # 1 when within success_radius
                "action_l2": 0.01,  # -|a|^2, smoothness
            },
            "expert_max_step": 0.02,  # m per control step
            "randomize": randomize.default_config(),  # domain randomisation, off (sim/randomize.py)
        }

    def bind(self, physics) -> None:
        super().bind(physics)
        self.target_mocap = physics.model.body("target").mocapid[0]
        self.target = np.zeros((self.num_envs, 3))
        self.start_distance = np.ones(self.num_envs)

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        self.reset_arm(ids, rng)
        cfg = self.config
        self.target[ids] = rng.uniform(cfg["target_low"], cfg["target_high"], size=(len(ids), 3))
        for i in ids:
            self.physics.datas[i].mocap_pos[self.target_mocap] = self.target[i]

    def after_reset(self, ids: np.ndarray) -> None:
        self.start_distance[ids] = row_norm(self.target[ids] - self.tcp[ids])

    task_obs_names = (  # observe()'s entries after the arm's, in order (the exported policy's spec.json)
        *("target_x", "target_y", "target_z"),
        *("target_minus_tcp_x", "target_minus_tcp_y", "target_minus_tcp_z"),
    )

    def observe(self) -> np.ndarray:
        return np.concatenate([*self.arm_obs(), self.target, self.target - self.tcp], axis=1, dtype=np.float32)

    def update(self) -> None:
        self._distance = row_norm(self.target - self.tcp)

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "distance": -self._distance,
            "success": (self._distance < self.config["success_radius"]).astype(np.float64),
            "action_l2": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        radius = self.config["success_radius"]
        success = self._distance < radius
        span = np.maximum(self.start_distance - radius, 1e-6)
        progress = np.minimum(np.maximum((self.start_distance - self._distance) / span, 0.0), 1.0)
        progress[success] = 1.0
        terminated = success & bool(self.config["terminate_on_success"])
        return Evaluation(success, progress, success.astype(np.int64), terminated)

    def expert(self, obs: np.ndarray) -> np.ndarray:
        gripper = -np.ones(self.num_envs)
        return self.servo_to(self.target, np.zeros(self.num_envs), gripper, self.config["expert_max_step"])
