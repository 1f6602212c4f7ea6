"""open_drawer: pull a cabinet's drawer open by its bar handle (an articulated slide joint).

The cabinet stands at a random place in front of the robot (a mocap body); the drawer opens toward the
robot. The expert hooks its closed fingers behind the handle bar and pulls.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from sim import randomize
from sim.arrays import clamp, row_norm
from sim.tasks.base import Evaluation
from sim.tasks.manipulation import ARM_SCENE_PARTS, ArmTask

# the hook point, relative to the handle bar's centre: midway between the bar and the drawer front,
# half a centimetre below the bar's axis (the closed finger pads reach 1.5 cm below the tool centre)
HOOK_OFFSET = np.array([0.0285, 0.0, -0.005])
CABINET_GEOMS = ("cabinet_bottom", "cabinet_top", "cabinet_left", "cabinet_right", "cabinet_back")


class OpenDrawer(ArmTask):
    name = "open_drawer"
    scene = "open_drawer"
    instruction = "open the drawer"
    stage_names = ("approach", "hooked", "pulling", "open")
    stage_captions = (
        "the gripper moves toward the drawer's handle",
        "the gripper's fingers are behind the drawer's handle",
        "the gripper pulls the drawer out",
        "the drawer is open",
    )
    randomize_parts = replace(
        ARM_SCENE_PARTS, object_geoms=(*CABINET_GEOMS, "drawer_front", "handle"), mass_bodies=("drawer",)
    )
    obs_dim = 28  # arm (17) + cabinet (3) + hook point (3) + hook point - tcp (3) + drawer opening and its speed (2)
    task_obs_names = (
        *("cabinet_x", "cabinet_y", "cabinet_z", "hook_x", "hook_y", "hook_z"),
        *("hook_minus_tcp_x", "hook_minus_tcp_y", "hook_minus_tcp_z", "drawer_opening", "drawer_speed"),
    )

    @staticmethod
    def default_config() -> dict[str, Any]:
        return {
            "substeps": 10,  # 10 x 5 ms physics = 20 Hz control
            "max_episode_steps": 100,
            "action_mode": "joint_delta",  # joint_delta: joint target deltas; ee_delta: tcp deltas, IK in the env
            "terminate_on_success": False,  # success is judged at the last step: the drawer must stay open
            "init_joint_noise": 0.1,  # rad
            "cabinet_low": [0.66, -0.12],  # m, the cabinet's centre on the table (handle clear of the arm's start pose)
            "cabinet_high": [0.72, 0.12],
            "initial_opening": [0.0, 0.02],  # m, drawer opening at the start
            "open_distance": 0.12,  # m, opening that counts as open (the slide allows 0.18)
            "hooked_distance": 0.015,  # m, tool centre to the hook point counting as hooked
            "tanh_scale": 10.0,  # 1/m, sharpness k of the bounded distance terms 1 - tanh(k d)
            "reward": {  # staged and bounded: at most 1 per step
                "reach": 0.25,  # 1 - tanh(k |tcp - hook point|)
                "open": 0.35,  # opening / open_distance, clipped to [0, 1]
                "success": 0.4,  # 1 while the drawer is open
                "action_l2": 0.0,  # -|a|^2
            },
            "expert_max_step": 0.02,  # m per control step
            "expert_pull_step": 0.02,  # m per control step while pulling (the target leads the handle by 3 cm)
            "randomize": randomize.default_config(),  # domain randomisation, off (sim/randomize.py)
        }

    def bind(self, physics) -> None:
        super().bind(physics)
        model = physics.model
        self.cabinet_mocap = model.body("cabinet").mocapid[0]
        joint = model.joint("drawer")
        self.drawer_qpos, self.drawer_qvel = joint.qposadr[0], joint.dofadr[0]
        self.handle_site = model.site("handle").id
        self.cabinet = np.zeros((self.num_envs, 3))
        self.opening_start = np.zeros(self.num_envs)
        self.reach_start = np.ones(self.num_envs)
        self._phase = np.zeros(self.num_envs, dtype=np.int64)  # expert: 0 hover, 1 descend, 2 pull

    def reset(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        self.reset_arm(ids, rng)
        cfg, n = self.config, len(ids)
        self.cabinet[ids, :2] = rng.uniform(cfg["cabinet_low"], cfg["cabinet_high"], size=(n, 2))
        self.cabinet[ids, 2] = 0.0
        opening = rng.uniform(*cfg["initial_opening"], size=n)
        self.opening_start[ids] = opening
        for k, i in enumerate(ids):
            data = self.physics.datas[i]
            data.mocap_pos[self.cabinet_mocap] = self.cabinet[i]
            data.qpos[self.drawer_qpos] = opening[k]

    def after_reset(self, ids: np.ndarray) -> None:
        self.reach_start[ids] = np.maximum(row_norm(self.hook_point()[ids] - self.tcp[ids]), 1e-3)
        self._phase[ids] = 0

    @property
    def handle(self) -> np.ndarray:
        return self.physics.site_xpos[:, self.handle_site]

    @property
    def opening(self) -> np.ndarray:
        return self.physics.qpos[:, self.drawer_qpos]

    def hook_point(self) -> np.ndarray:
        """Where the tool centre must be to pull the handle: behind the bar, (N, 3)."""
        return self.handle + HOOK_OFFSET

    def observe(self) -> np.ndarray:
        hook = self.hook_point()
        drawer = (self.opening[:, None], self.physics.qvel[:, self.drawer_qvel, None])
        return np.concatenate([*self.arm_obs(), self.cabinet, hook, hook - self.tcp, *drawer], axis=1, dtype=np.float32)

    def update(self) -> None:
        cfg = self.config
        self._hook_dist = row_norm(self.hook_point() - self.tcp)
        span = max(cfg["open_distance"], 1e-6)
        self._open_frac = clamp(self.opening / span, 0.0, 1.0)
        self._success = self.opening >= cfg["open_distance"]

    def reward_terms(self, action: np.ndarray) -> dict[str, np.ndarray]:
        k = self.config["tanh_scale"]
        return {
            "reach": 1.0 - np.tanh(k * self._hook_dist),
            "open": self._open_frac,
            "success": self._success.astype(np.float64),
            "action_l2": -np.einsum("ij,ij->i", action, action),
        }

    def evaluate(self) -> Evaluation:
        cfg = self.config
        pulled = self.opening - self.opening_start
        span = np.maximum(cfg["open_distance"] - self.opening_start, 1e-6)
        pull = clamp(pulled / span, 0.0, 1.0)
        approach = np.maximum(1.0 - self._hook_dist / self.reach_start, 0.0)
        progress = 0.3 * np.where(pulled > 0.01, 1.0, approach) + 0.7 * pull
        progress[self._success] = 1.0
        hooked = self._hook_dist < cfg["hooked_distance"]
        stage = hooked.astype(np.int64)
        stage[hooked & (pulled > 0.01)] = 2  # pulled by the fingers behind the handle
        stage[self._success] = 3
        terminated = self._success & bool(cfg["terminate_on_success"])
        return Evaluation(self._success.copy(), progress, stage, terminated)

    # -- expert -----------------------------------------------------------------------------
    def expert(self, obs: np.ndarray) -> np.ndarray:
        """Hover above the hook point, descend behind the handle bar with the fingers closed, pull toward
        the robot (-x) until the drawer is open; back to hovering when the handle slips away."""
        cfg = self.config
        tcp, hook, phase = self.tcp, self.hook_point(), self._phase
        hover = hook + np.array([0.0, 0.0, 0.07])
        level = row_norm(tcp[:, :2] - hook[:, :2])
        phase[(phase == 0) & (level < 0.006) & (np.abs(tcp[:, 2] - hover[:, 2]) < 0.02)] = 1
        phase[(phase == 1) & (level > 0.015)] = 0
        phase[(phase == 1) & (np.abs(tcp[:, 2] - hook[:, 2]) < 0.006)] = 2
        phase[(phase == 2) & (row_norm(tcp - hook) > 0.03)] = 0

        target = np.empty_like(tcp)
        high = tcp[:, 2] > hover[:, 2] - 0.03
        target[:, :2] = np.where(high[:, None], hover[:, :2], tcp[:, :2])  # climb first, then travel
        target[:, 2] = hover[:, 2]
        descend, pull = phase == 1, phase == 2
        target[descend] = hook[descend]
        done = self.opening >= cfg["open_distance"] + 0.01
        target[pull] = hook[pull] - np.array([0.03, 0.0, 0.0]) * ~done[pull, None]
        step = np.where(pull, cfg["expert_pull_step"], cfg["expert_max_step"])[:, None]
        return self.servo_to(target, np.zeros(self.num_envs), np.ones(self.num_envs), step)
