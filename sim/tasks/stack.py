"""stack: pick the red cube up and put it on the blue cube, then let go.

The stages are what a process reward must get right: approach, grasp, lift, align over the blue cube,
set down on it, release — success only once the gripper has let go and the red cube rests on the blue.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sim import randomize
from sim.arrays import clamp, plane_distance, row_norm
from sim.tasks.base import Evaluation
from sim.tasks.manipulation import ARM_SCENE_PARTS, RELEASED, GraspTask


class Stack(GraspTask):
    name = "stack"
    scene = "stack"
    release = True
    instruction = "stack the red cube on the blue cube"
    stage_names = ("approach", "grasp", "lift", "align", "stacked", "released")
    stage_captions = (
        "the open gripper moves toward the red cube",
        "the gripper closes around the red cube",
        "the gripper lifts the red cube off the table",
        "the gripper holds the red cube above the blue cube",
        "the gripper sets the red cube down on the blue cube",
        "the red cube stands on the blue cube and the gripper has let go",
    )
    randomize_parts = replace(ARM_SCENE_PARTS, object_geoms=("cube", "base"), mass_bodies=("cube", "base"))
    # arm (17) + red cube pos (3) + quat (4) + blue cube pos (3) + quat (4) + red - tcp (3) + place target - red (3)
    # + grasped (1) + remaining path (1) + red cube height (1)
    obs_dim = 40
    task_obs_names = (
        *("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz"),
        *("base_x", "base_y", "base_z", "base_qw", "base_qx", "base_qy", "base_qz"),
        *("cube_minus_tcp_x", "cube_minus_tcp_y", "cube_minus_tcp_z"),
        *("cube_to_target_x", "cube_to_target_y", "cube_to_target_z"),
        *("grasped", "remaining_path", "cube_height"),
    )

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "substeps": 10,  # 10 x 5 ms physics = 20 Hz control
            "max_episode_steps": 150,
            "action_mode": "joint_delta",  # joint_delta: joint target deltas; ee_delta: tcp deltas, IK in the env
            "terminate_on_success": False,  # success is judged at the last step: the stack must stand
            "init_joint_noise": 0.1,  # rad
            "cube_low": [0.36, -0.15],  # m, region of both cubes' start positions
            "cube_high": [0.54, 0.15],
            "min_separation": 0.1,  # m, between the two cubes at the start
            "align_radius": 0.015,  # m, red over blue in the table plane that counts as stacked
            "height_tolerance": 0.006,  # m, red cube centre within this of 4 cm above the blue one
            "cube_rgba": [0.9, 0.1, 0.1, 1.0],
            "base_rgba": [0.1, 0.2, 0.9, 1.0],
            "tanh_scale": 10.0,  # 1/m, sharpness k of the bounded distance terms 1 - tanh(k d)
            "reward": {  # staged and bounded: at most 1 per step
                "reach": 0.1,  # 1 - tanh(k |tcp - red cube|)
                "grasp": 0.1,  # 1 while the fingers hold the red cube
                "transport": 0.2,  # 1 - tanh(k path), the red cube's remaining path onto the blue one, while held
                "stacked": 0.2,  # 1 while the red cube rests on the blue one
                "success": 0.4,  # 1 while it rests there and the gripper has let go
                "action_l2": 0.0,  # -|a|^2
            },
            "expert_max_step": 0.02,  # m per control step
            "expert_place_step": 0.006,  # m per control step for the last centimetres down
            "randomize": randomize.default_config(),  # domain randomisation, off (sim/randomize.py)
        }

    def bind(self, physics) -> None:
        super().bind(physics)
        model = physics.model
        self.base_qpos = model.joint("base").qposadr[0]
        model.geom_rgba[model.geom("cube").id] = self.config["cube_rgba"]
        model.geom_rgba[model.geom("base").id] = self.config["base_rgba"]

    @property
    def base(self) -> np.ndarray:
        return self.physics.qpos[:, self.base_qpos : self.base_qpos + 3]

    def place_target(self) -> np.ndarray:
        target = self.base.copy()
        target[:, 2] += 2 * self.cube_half
        return target

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        self.reset_arm(ids, rng)
        cfg, n = self.config, len(ids)
        cube = rng.uniform(cfg["cube_low"], cfg["cube_high"], size=(n, 2))
        base = rng.uniform(cfg["cube_low"], cfg["cube_high"], size=(n, 2))
        near = row_norm(base - cube) < cfg["min_separation"]
        while near.any():
            base[near] = rng.uniform(cfg["cube_low"], cfg["cube_high"], size=(int(near.sum()), 2))
            near = row_norm(base - cube) < cfg["min_separation"]
        self.reset_cube(ids, cube, rng.uniform(-np.pi / 4, np.pi / 4, size=n))
        self.reset_cube(ids, base, rng.uniform(-np.pi / 4, np.pi / 4, size=n), joint="base")

    def observe(self) -> np.ndarray:
        cube, target = self.cube, self._target  # what update() computed
        base_quat = self.physics.qpos[:, self.base_qpos + 3 : self.base_qpos + 7]
        extra = (self._grasped[:, None], self._path[:, None], cube[:, 2:3] - self.cube_half)
        parts = [*self.arm_obs(), cube, self.cube_quat, self.base, base_quat, self._cube_minus_tcp, target - cube]
        return np.concatenate([*parts, *extra], axis=1, dtype=np.float32)

    def update(self) -> None:
        super().update()
        cfg = self.config
        cube, target = self.cube, self._target
        self._align = plane_distance(cube, target)  # in the table plane, over the blue cube
        level = np.abs(cube[:, 2] - target[:, 2]) < cfg["height_tolerance"]
        self._stacked = (self._align < cfg["align_radius"]) & level
        self._released = self._finger_min > RELEASED

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        k = self.config["tanh_scale"]
        return {
            "reach": 1.0 - np.tanh(k * self._tcp_cube),
            "grasp": self._grasped.astype(np.float64),
            "transport": (1.0 - np.tanh(k * self._path)) * self._grasped,
            "stacked": self._stacked.astype(np.float64),
            "success": (self._stacked & self._released).astype(np.float64),
            "action_l2": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        cube = self.cube
        success = self._stacked & self._released
        approach, engaged, transport = self.grasp_progress()
        opening = clamp(self._finger_min / RELEASED, 0.0, 1.0)
        released_part = np.where(self._stacked & ~self._grasped, opening, 0.0)
        progress = 0.2 * approach + 0.1 * engaged + 0.6 * transport + 0.1 * released_part
        progress[success] = 1.0
        lifted = self._grasped & (cube[:, 2] > self.cube_half + 0.015)
        over = self._align < 0.02
        stage = self._grasped.astype(np.int64)
        stage[lifted] = 2
        stage[lifted & over] = 3
        stage[self._stacked] = 4
        stage[success] = 5
        terminated = (cube[:, 2] < -0.05) | (self.base[:, 2] < -0.05)  # a cube fell off the table
        if self.config["terminate_on_success"]:
            terminated |= success
        return Evaluation(success, clamp(progress, 0.0, 1.0), stage, terminated)
