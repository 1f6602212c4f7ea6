"""pick_place: grasp a 4 cm cube and carry it to a goal, floating in the air or marked on the table."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sim import randomize
from sim.arrays import clamp, row_norm
from sim.tasks.base import Evaluation
from sim.tasks.manipulation import ARM_SCENE_PARTS, GraspTask, quat_yaw


class PickPlace(GraspTask):
    name = "pick_place"
    scene = "pick_place"
    instruction = "pick up the red cube and put it at the green ball"
    stage_names = ("approach", "grasp", "carry", "at_goal")
    stage_captions = (
        "the open gripper moves toward the red cube",
        "the gripper closes around the red cube",
        "the gripper carries the red cube toward the green ball",
        "the red cube is at the green ball",
    )
    randomize_parts = replace(ARM_SCENE_PARTS, object_geoms=("cube", "goal"), mass_bodies=("cube",))
    # arm (17) + cube pos (3) + quat (4) + goal (3) + cube - tcp (3) + goal - cube (3) + grasped (1)
    # + remaining path, carry height, goal on the table, cube height, mean finger opening, sin(4 cube yaw) (6)
    obs_dim = 40
    task_obs_names = (
        *("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz", "goal_x", "goal_y", "goal_z"),
        *("cube_minus_tcp_x", "cube_minus_tcp_y", "cube_minus_tcp_z"),
        *("goal_minus_cube_x", "goal_minus_cube_y", "goal_minus_cube_z"),
        "grasped",
        *("remaining_path", "carry_z", "goal_on_table", "cube_height", "finger_mean", "cube_yaw"),
    )

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "substeps": 10,  # 10 x 5 ms physics = 20 Hz control
            "max_episode_steps": 150,
            "action_mode": "joint_delta",  # joint_delta: joint target deltas; ee_delta: tcp deltas, IK in the env
            "success_radius": 0.03,  # m, cube centre to goal (3-D)
            # False: success is judged at the episode's last step; the cube must be brought there and kept there
            "terminate_on_success": False,
            "init_joint_noise": 0.1,  # rad
            "cube_low": [0.36, -0.15],  # m, cube start region on the table
            "cube_high": [0.54, 0.15],
            "goal_low": [0.32, -0.2, 0.08],  # m, goals in the air are drawn in this box
            "goal_high": [0.58, 0.2, 0.25],
            "goal_min_distance": 0.1,  # m, goal at least this far from the cube in the table plane
            "table_goal_prob": 0.5,  # share of episodes whose goal is a spot on the table (cube resting on it)
            "cube_rgba": [0.9, 0.1, 0.1, 1.0],
            "tanh_scale": 10.0,  # 1/m, sharpness k of the bounded distance terms 1 - tanh(k d)
            "reward": {  # staged and bounded: at most 1 per step
                "reach": 0.15,  # 1 - tanh(k |tcp - cube|)
                "grasp": 0.15,  # 1 while the fingers hold the cube
                "transport": 0.3,  # 1 - tanh(k path), the cube's remaining path to the goal, while held
                "success": 0.4,  # 1 while the cube is at the goal
                "action_l2": 0.0,  # -|a|^2
            },
            "expert_max_step": 0.02,  # m per control step
            "expert_place_step": 0.008,  # m per control step for the last centimetres down
            "randomize": randomize.default_config(),  # domain randomisation, off (sim/randomize.py)
        }

    def bind(self, physics) -> None:
        super().bind(physics)
        model = physics.model
        self.goal_mocap = model.body("goal").mocapid[0]
        model.geom_rgba[model.geom("cube").id] = self.config["cube_rgba"]
        self.goal = np.zeros((self.num_envs, 3))
        self._goal_columns = np.zeros((self.num_envs, 2))  # carry height, goal on the table: fixed per episode

    def place_target(self) -> np.ndarray:
        return self.goal

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        self.reset_arm(ids, rng)
        cfg, n = self.config, len(ids)
        cube_xy = rng.uniform(cfg["cube_low"], cfg["cube_high"], size=(n, 2))
        self.reset_cube(ids, cube_xy, rng.uniform(-np.pi / 4, np.pi / 4, size=n))
        goal = rng.uniform(cfg["goal_low"], cfg["goal_high"], size=(n, 3))
        near = row_norm(goal[:, :2] - cube_xy) < cfg["goal_min_distance"]
        while near.any():  # redraw goals too close to the cube
            goal[near] = rng.uniform(cfg["goal_low"], cfg["goal_high"], size=(int(near.sum()), 3))
            near = row_norm(goal[:, :2] - cube_xy) < cfg["goal_min_distance"]
        on_table = rng.random(n) < cfg["table_goal_prob"]
        goal[on_table, 2] = self.cube_half
        self.goal[ids] = goal
        for k, i in enumerate(ids):
            self.physics.datas[i].mocap_pos[self.goal_mocap] = goal[k]

    def after_reset(self, ids: np.ndarray) -> None:
        super().after_reset(ids)
        self._goal_columns[ids, 0] = self.carry_z(self.goal[ids])
        self._goal_columns[ids, 1] = self.goal[ids, 2] < self.cube_half + 1e-6

    def observe(self) -> np.ndarray:
        cube, goal, fingers = self.cube, self.goal, self.fingers
        extra = (
            self._path[:, None],  # the remaining path, from update()
            self._goal_columns,  # the carry height, the goal on the table (fixed per episode)
            cube[:, 2:3] - self.cube_half,
            0.5 * (fingers[:, :1] + fingers[:, 1:]),
            np.sin(4 * quat_yaw(self.cube_quat))[:, None],  # the cube's yaw modulo its 90° symmetry
        )
        parts = [*self.arm_obs(), cube, self.cube_quat, goal, self._cube_minus_tcp, goal - cube, self._grasped[:, None]]
        return np.concatenate([*parts, *extra], axis=1, dtype=np.float32)

    def update(self) -> None:
        super().update()
        self._goal_dist = row_norm(self.cube - self.goal)

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        k = self.config["tanh_scale"]
        return {
            "reach": 1.0 - np.tanh(k * self._tcp_cube),
            "grasp": self._grasped.astype(np.float64),
            "transport": (1.0 - np.tanh(k * self._path)) * self._grasped,
            "success": (self._goal_dist < self.config["success_radius"]).astype(np.float64),
            "action_l2": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        cfg = self.config
        success = self._goal_dist < cfg["success_radius"]
        approach, engaged, transport = self.grasp_progress()
        progress = 0.25 * approach + 0.1 * engaged + 0.65 * transport
        progress[success] = 1.0
        stage = self._grasped.astype(np.int64)
        moved = row_norm(self.cube - self.cube_start) > 0.02
        stage[self._grasped & moved] = 2
        stage[success] = 3
        terminated = self.cube[:, 2] < -0.05  # fell off the table
        if cfg["terminate_on_success"]:
            terminated |= success
        return Evaluation(success, clamp(progress, 0.0, 1.0), stage, terminated)
