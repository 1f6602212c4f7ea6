"""push_cube: push a 5 cm cube across the table onto a random goal."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sim import randomize
from sim.arrays import clamp, row_norm
from sim.tasks.base import Evaluation
from sim.tasks.manipulation import ARM_SCENE_PARTS, ArmTask

CUBE_HALF = 0.025
PAD_HALF = 0.012  # finger pad half-thickness along the push direction
STAGES = ("approach", "contact", "push", "at_goal")


class PushCube(ArmTask):
    name = "push_cube"
    scene = "push_cube"
    instruction = "push the red cube onto the green goal"
    stage_names = STAGES
    stage_captions = (
        "the gripper moves toward the red cube",
        "the gripper touches the red cube",
        "the gripper pushes the red cube toward the green goal",
        "the red cube is on the green goal",
    )
    randomize_parts = replace(ARM_SCENE_PARTS, object_geoms=("cube",), mass_bodies=("cube",))
    obs_dim = 36  # arm (17) + cube pos (3) + quat (4) + goal (3) + cube - tcp (3) + to pre-push (3) + goal - cube (3)

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "substeps": 10,  # 10 x 5 ms physics = 20 Hz control
            "max_episode_steps": 100,
            "action_mode": "joint_delta",  # joint_delta: joint target deltas; ee_delta: tcp deltas, IK in the env
            "success_radius": 0.05,  # m, cube centre to goal in the table plane
            # False: an episode runs to its time limit and success is judged at its last step, so a policy must
            # bring the cube there and keep it there; every reward term is >= 0 and nothing pays for ending early
            "terminate_on_success": False,
            "init_joint_noise": 0.1,  # rad
            "cube_low": [0.38, -0.12],  # m, cube start region on the table
            "cube_high": [0.52, 0.12],
            "goal_distance": [0.08, 0.18],  # m, goal placed this far from the cube
            "goal_angle": [-0.4, 0.4],  # rad, direction cube -> goal, 0 = +x (away from the robot); [-pi, pi]: any
            "goal_low": [0.32, -0.2],  # m, goals are kept inside this box
            "goal_high": [0.60, 0.2],
            "contact_distance": 0.05,  # m, tcp to pre-push point counting as contact stage (and gating "place")
            "cube_rgba": [0.9, 0.1, 0.1, 1.0],  # a visual variant changes this (reward models see it)
            "tanh_scale": 10.0,  # 1/m, sharpness k of the bounded distance terms 1 - tanh(k d)
            "reward": {  # staged and bounded: at most 1 per step
                "reach": 0.25,  # 1 - tanh(k |tcp - pre-push point|): fingers low behind the cube
                "place": 0.25,  # 1 - tanh(k |cube - goal|) in the table plane, while the tcp is in pushing position
                "success": 0.5,  # 1 while the cube is on the goal
                "action_l2": 0.0,  # -|a|^2
            },
            "expert_max_step": 0.02,  # m per control step
            "expert_push_step": 0.012,  # m per control step while pushing
            "randomize": randomize.default_config(),  # domain randomisation, off (sim/randomize.py)
        }

    def bind(self, physics) -> None:
        super().bind(physics)
        model = physics.model
        cube_joint = model.joint("cube")
        self.cube_qpos = cube_joint.qposadr[0]
        self.cube_qvel = cube_joint.dofadr[0]
        self.goal_mocap = model.body("goal").mocapid[0]
        model.geom_rgba[model.geom("cube").id] = self.config["cube_rgba"]
        self.goal = np.zeros((self.num_envs, 3))
        self.cube_start = np.zeros((self.num_envs, 3))
        self.approach_start = np.ones(self.num_envs)  # tcp to pre-push point at reset
        self.start_goal = np.ones(self.num_envs)  # cube to goal at reset
        self.push_scale = np.ones(self.num_envs)  # 1 / (start_goal - success_radius)
        self._phase = np.zeros(self.num_envs, dtype=np.int64)  # expert: 0 hover, 1 descend, 2 push

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        self.reset_arm(ids, rng)
        self._phase[ids] = 0
        cfg, n = self.config, len(ids)
        cube_xy = rng.uniform(cfg["cube_low"], cfg["cube_high"], size=(n, 2))
        yaw = rng.uniform(-np.pi / 4, np.pi / 4, size=n)
        goal_xy = self._sample_goals(cube_xy, rng)
        self.goal[ids, :2], self.goal[ids, 2] = goal_xy, 0.0
        self.cube_start[ids, :2], self.cube_start[ids, 2] = cube_xy, CUBE_HALF
        quat = np.stack([np.cos(yaw / 2), np.zeros(n), np.zeros(n), np.sin(yaw / 2)], axis=1)
        for k, i in enumerate(ids):
            data = self.physics.datas[i]
            data.qpos[self.cube_qpos : self.cube_qpos + 3] = self.cube_start[i]
            data.qpos[self.cube_qpos + 3 : self.cube_qpos + 7] = quat[k]
            data.mocap_pos[self.goal_mocap] = self.goal[i]

    def _sample_goals(self, cube_xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Goals at a random distance and direction from the cube, redrawn until inside the goal box."""
        cfg = self.config
        low, high = np.array(cfg["goal_low"]), np.array(cfg["goal_high"])
        goal = np.empty_like(cube_xy)
        todo = np.arange(len(cube_xy))
        for _ in range(1000):
            angle = rng.uniform(*cfg["goal_angle"], size=len(todo))
            dist = rng.uniform(*cfg["goal_distance"], size=len(todo))
            goal[todo] = cube_xy[todo] + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
            todo = todo[~((goal[todo] >= low) & (goal[todo] <= high)).all(axis=1)]
            if not len(todo):
                return goal
        cube = np.round(cube_xy[todo[0]], 3).tolist()
        raise ValueError(f"push_cube: no goal at goal_distance {cfg['goal_distance']} and goal_angle "
                         f"{cfg['goal_angle']} from a cube at {cube} lies in goal_low/goal_high "
                         f"{cfg['goal_low']}..{cfg['goal_high']}; widen the goal box or the angles")  # fmt: skip

    def after_reset(self, ids: np.ndarray) -> None:
        pre = self._pre_push_point()
        self.approach_start[ids] = np.maximum(row_norm(pre[ids] - self.tcp[ids]), 1e-3)
        self.start_goal[ids] = row_norm(self.goal[ids, :2] - self.cube_start[ids, :2])
        self.push_scale[ids] = 1.0 / np.maximum(self.start_goal[ids] - self.config["success_radius"], 1e-6)

    # -- state ------------------------------------------------------------------------------
    @property
    def cube(self) -> np.ndarray:
        return self.physics.qpos[:, self.cube_qpos : self.cube_qpos + 3]

    def _push_direction(self) -> np.ndarray:
        """Unit vectors (N, 2) from cube to goal in the table plane."""
        delta = self.goal[:, :2] - self.cube[:, :2]
        return delta / np.maximum(row_norm(delta), 1e-9)[:, None]

    def _pre_push_point(self) -> np.ndarray:
        """Where the closed fingers must be to push the cube toward the goal: (N, 3)."""
        pre = np.empty((self.num_envs, 3))
        pre[:, :2] = self.cube[:, :2] - self._push_direction() * (CUBE_HALF + PAD_HALF + 0.012)
        pre[:, 2] = CUBE_HALF
        return pre

    task_obs_names = (  # observe()'s entries after the arm's, in order (the exported policy's spec.json)
        *("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz", "goal_x", "goal_y", "goal_z"),
        *("cube_minus_tcp_x", "cube_minus_tcp_y", "cube_minus_tcp_z"),
        *("tcp_to_pre_push_x", "tcp_to_pre_push_y", "tcp_to_pre_push_z"),
        *("goal_minus_cube_x", "goal_minus_cube_y", "goal_minus_cube_z"),
    )

    def observe(self) -> np.ndarray:
        cube_quat = self.physics.qpos[:, self.cube_qpos + 3 : self.cube_qpos + 7]
        tcp = self.tcp
        # where the fingers must be to push the cube goalward (what "reach" rewards), relative to them
        to_pre = self._pre_push_point() - tcp
        parts = [*self.arm_obs(), self.cube, cube_quat, self.goal, self.cube - tcp, to_pre, self.goal - self.cube]
        return np.concatenate(parts, axis=1, dtype=np.float32)

    def update(self) -> None:
        cube, tcp = self.cube, self.tcp
        to_goal = self.goal[:, :2] - cube[:, :2]
        self._cube_goal = row_norm(to_goal)
        self._tcp_cube = row_norm(cube - tcp)
        # distance from the tcp to the pre-push point (see _pre_push_point), without building it
        offset = (CUBE_HALF + PAD_HALF + 0.012) / np.maximum(self._cube_goal, 1e-9)
        to_pre = cube[:, :2] - to_goal * offset[:, None] - tcp[:, :2]
        self._approach_dist = np.sqrt(np.einsum("ij,ij->i", to_pre, to_pre) + (CUBE_HALF - tcp[:, 2]) ** 2)

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        k = self.config["tanh_scale"]
        return {
            "reach": 1.0 - np.tanh(k * self._approach_dist),
            "place": (1.0 - np.tanh(k * self._cube_goal)) * (self._approach_dist < self.config["contact_distance"]),
            "success": (self._cube_goal < self.config["success_radius"]).astype(np.float64),
            "action_l2": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        cfg = self.config
        cube_goal, approach_dist = self._cube_goal, self._approach_dist
        success = cube_goal < cfg["success_radius"]
        approach = np.maximum(1.0 - approach_dist / self.approach_start, 0.0)
        push = clamp((self.start_goal - cube_goal) * self.push_scale, 0.0, 1.0)
        progress = 0.3 * np.maximum(approach, push > 0.02) + 0.7 * push  # once pushing, approach is done
        progress[success] = 1.0

        stage = (approach_dist < cfg["contact_distance"]).astype(np.int64)
        moved = self.cube[:, :2] - self.cube_start[:, :2]
        stage[np.einsum("ij,ij->i", moved, moved) > 0.01**2] = 2
        stage[success] = 3
        terminated = self.cube[:, 2] < -0.05  # fell off the table
        if cfg["terminate_on_success"]:
            terminated |= success
        return Evaluation(success, progress, stage, terminated)

    # -- expert -----------------------------------------------------------------------------
    def expert(self, obs: np.ndarray) -> np.ndarray:
        """Hover over the pre-push point, descend, push along the cube→goal line correcting sideways.

        A per-env phase (hover → descend → push) with hysteresis keeps the expert from chattering at
        the boundaries; it falls back to hovering when the cube turns away or slips sideways.
        """
        cfg = self.config
        tcp, cube, phase = self.tcp, self.cube, self._phase
        u = self._push_direction()
        perp = np.stack([-u[:, 1], u[:, 0]], axis=1)
        rel = tcp[:, :2] - cube[:, :2]
        along, lateral = (rel * u).sum(axis=1), (rel * perp).sum(axis=1)
        pre = self._pre_push_point()
        to_pre = row_norm(tcp[:, :2] - pre[:, :2])

        # Fingers square to the push line; the gripper is symmetric, so take the yaw nearest the current one.
        current = self.tcp_yaw()
        yaw = np.arctan2(u[:, 1], u[:, 0])
        yaw = current + (yaw - current + np.pi / 2) % np.pi - np.pi / 2
        yaw_err = np.abs(yaw - current)

        hover_z, push_z = 0.09, CUBE_HALF
        contact = CUBE_HALF + PAD_HALF
        hover, descend, push = phase == 0, phase == 1, phase == 2
        phase[hover & (to_pre < 0.01) & (yaw_err < 0.2)] = 1
        phase[descend & (to_pre > 0.03)] = 0
        phase[descend & (to_pre < 0.012) & (tcp[:, 2] < push_z + 0.008)] = 2
        lost = push & ((np.abs(lateral) > 0.02) | (along > -(contact - 0.01)) | (yaw_err > 0.5))
        phase[lost] = np.where(along[lost] < -(contact + 0.015), 1, 0)

        target = np.empty_like(tcp)
        high = tcp[:, 2] > hover_z - 0.02
        target[:, :2] = np.where(high[:, None], pre[:, :2], tcp[:, :2])  # climb first, then travel
        target[:, 2] = hover_z
        descend, push = phase == 1, phase == 2
        target[descend] = pre[descend]
        remaining = row_norm(self.goal[:, :2] - cube[:, :2])
        step = np.minimum(cfg["expert_push_step"], remaining)[:, None]
        target[push, :2] = tcp[push, :2] + step[push] * u[push] - 0.5 * lateral[push, None] * perp[push]
        target[push, 2] = push_z
        gripper = np.ones(self.num_envs)  # closed: the two fingers form one 2.4 cm pusher
        return self.servo_to(target, yaw, gripper, cfg["expert_max_step"])
