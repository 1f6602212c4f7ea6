"""What the tabletop manipulation tasks share: scene loading, arm reset and observation, expert IK primitives.

Not a task itself (the registry skips modules that define no concrete task); the robot's constants and
IK live in :mod:`sim.robots.arm6`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np

from sim.arrays import as_slice, clamp, plane_distance, row_norm
from sim.physics import ThreadedPhysics
from sim.randomize import SceneParts, add_scenery
from sim.robots.arm6 import (
    ACTION_DIM,
    ACTION_ENTRIES,
    ACTION_MODES,
    ACTION_SEMANTICS,
    ARM_JOINTS,
    ARM_OBS_NAMES,
    ASSETS,
    CAMERAS,
    EE_ACTION_DIM,
    EE_MIN_Z,
    FINGER_JOINTS,
    FINGER_OPEN,
    HOME_QPOS,
    MAX_EE_STEP,
    MAX_EE_YAW_STEP,
    NUM_ARM_JOINTS,
    TCP_SITE,
    TcpJacobian,
    apply_action,
    home_ctrl,
    ik_action,
    joint_limits,
    rotation_error,
    yaw_matrix,
)
from sim.tasks.base import Task

FLOOR_Z = -0.75  # m, the floor a randomised scene adds under the table (its top is at z = 0)
# what domain randomisation recolours in every arm scene; a task adds its objects (dataclasses.replace)
ARM_SCENE_PARTS = SceneParts(
    table_geoms=("table",), floor_geoms=("floor",), robot_bodies=("arm_base",), distractors=True
)


def load_scene(name: str) -> mujoco.MjModel:
    """Compile ``assets/<name>.xml`` (which includes the shared tabletop and arm)."""
    return mujoco.MjModel.from_xml_path(str(ASSETS / f"{name}.xml"))


def clip_norm(vec: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale rows of ``vec`` (N, D) down to at most ``max_norm``."""
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    return vec * np.minimum(1.0, max_norm / np.maximum(norm, 1e-12))


class ArmTask(Task):
    """What the tabletop manipulation tasks share: arm reset, arm observation, tcp, expert IK."""

    cameras = CAMERAS
    act_dim = ACTION_DIM
    needs_kinematics = True
    scene: str
    # the task's observe() entries after arm_obs(), in order: names for the exported policy's spec.json
    task_obs_names: ClassVar[tuple[str, ...]]

    def __init__(self, num_envs: int, config: dict[str, Any] | None = None) -> None:
        super().__init__(num_envs, config)
        self.action_mode = self.config.get("action_mode", "joint_delta")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        self.act_dim = ACTION_DIM if self.action_mode == "joint_delta" else EE_ACTION_DIM

    def build_model(self) -> mujoco.MjModel:
        """The task's scene; with randomisation on, plus a floor and distractor slots (sim.randomize.add_scenery)."""
        randomize = self.config.get("randomize", {})
        if not randomize.get("enabled", False):
            return load_scene(self.scene)
        spec = mujoco.MjSpec.from_file(str(ASSETS / f"{self.scene}.xml"))
        add_scenery(spec, randomize, FLOOR_Z)
        return spec.compile()

    def bind(self, physics: ThreadedPhysics) -> None:
        super().bind(physics)
        model = physics.model
        self.lower, self.upper = joint_limits(model)
        self.arm_qpos = as_slice([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.arm_qvel = as_slice([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.finger_qpos = as_slice([model.joint(j).qposadr[0] for j in FINGER_JOINTS])
        self.tcp_site = model.site(TCP_SITE).id
        self.jacobian = TcpJacobian(model)

    def reset_arm(self, ids: np.ndarray, rng: np.random.Generator) -> None:
        """Home pose plus uniform joint noise, gripper open, targets holding the start pose."""
        noise = float(self.config["init_joint_noise"])
        qpos = HOME_QPOS + rng.uniform(-noise, noise, size=(len(ids), NUM_ARM_JOINTS))
        qpos = np.clip(qpos, self.lower, self.upper)
        ctrl = home_ctrl(qpos)
        for k, i in enumerate(ids):
            data = self.physics.datas[i]
            mujoco.mj_resetData(self.physics.model, data)
            data.qpos[self.arm_qpos] = qpos[k]
            data.qpos[self.finger_qpos] = FINGER_OPEN
            data.ctrl[:] = ctrl[k]
        self.physics.ctrl[ids] = ctrl

    def apply_action(self, action: np.ndarray) -> None:
        if self.action_mode == "ee_delta":
            action = self.ee_to_joint_action(action)
        apply_action(self.physics.ctrl, action, self.lower, self.upper)

    def ee_to_joint_action(self, action: np.ndarray) -> np.ndarray:
        """ee_delta actions (N, 5) → joint-delta actions (N, 7) by one damped-least-squares IK step.

        The tcp target is the measured tcp plus ``action[:, :3] * MAX_EE_STEP`` (kept above ``EE_MIN_Z``),
        the gripper keeps pointing down at the measured yaw plus ``action[:, 3] * MAX_EE_YAW_STEP``; a robot
        running an exported ee_delta policy applies the same step with the same arm model.
        """
        target = self.tcp + action[:, :3] * MAX_EE_STEP
        target[:, 2] = np.maximum(target[:, 2], EE_MIN_Z)
        yaw = self.tcp_yaw() + action[:, 3] * MAX_EE_YAW_STEP
        jac, rot = self.jacobian(self.physics.datas)
        rot_err = clip_norm(rotation_error(rot, yaw_matrix(yaw)), 0.3)
        qpos = self.physics.qpos[:, self.arm_qpos]
        return ik_action(jac, target - self.tcp, rot_err, qpos, self.physics.ctrl[:, :NUM_ARM_JOINTS], action[:, 4])

    @property
    def tcp(self) -> np.ndarray:
        """Tool centre point positions (N, 3)."""
        return self.physics.site_xpos[:, self.tcp_site]

    def arm_obs(self) -> list[np.ndarray]:
        """Joint positions (6), velocities (6), finger openings (2), tcp position (3)."""
        phys = self.physics
        return [phys.qpos[:, self.arm_qpos], phys.qvel[:, self.arm_qvel], phys.qpos[:, self.finger_qpos], self.tcp]

    def servo_to(
        self, target: np.ndarray, yaw: np.ndarray, gripper: np.ndarray, max_step: float | np.ndarray
    ) -> np.ndarray:
        """Expert primitive: action moving the tcp toward ``target`` (N, 3) at gripper yaw ``yaw`` (N,).

        ``max_step``: m per control step, one number or one per env ((N, 1)).
        """
        pos_err = clip_norm(target - self.tcp, max_step)
        if self.action_mode == "ee_delta":  # the env runs the IK: hand it the tcp step and yaw change
            action = np.empty((self.num_envs, EE_ACTION_DIM))
            action[:, :3] = np.clip(pos_err / MAX_EE_STEP, -1.0, 1.0)
            turn = (yaw - self.tcp_yaw() + np.pi) % (2 * np.pi) - np.pi
            action[:, 3] = np.clip(turn / MAX_EE_YAW_STEP, -1.0, 1.0)
            action[:, 4] = gripper
            return action
        jac, rot = self.jacobian(self.physics.datas)
        rot_err = clip_norm(rotation_error(rot, yaw_matrix(yaw)), 0.3)
        qpos = self.physics.qpos[:, self.arm_qpos]
        return ik_action(jac, pos_err, rot_err, qpos, self.physics.ctrl[:, :NUM_ARM_JOINTS], gripper)

    def policy_interface(self) -> dict[str, Any]:
        """Observation names, action semantics and the six arm joints' limits (see :meth:`Task.policy_interface`)."""
        model = self.physics.model if self.physics is not None else self.build_model()
        lower, upper = joint_limits(model)
        return {
            "observation_names": [*ARM_OBS_NAMES, *self.task_obs_names],
            "action": {
                "mode": self.action_mode,
                "names": [name for name, _ in ACTION_ENTRIES[self.action_mode]],
                "scale": [scale for _, scale in ACTION_ENTRIES[self.action_mode]],
                "semantics": ACTION_SEMANTICS[self.action_mode],
            },
            "joints": {"names": list(ARM_JOINTS), "lower": lower.tolist(), "upper": upper.tolist()},
        }

    def tcp_yaw(self) -> np.ndarray:
        """Current gripper yaw about world z (N,)."""
        rot = np.stack([d.site_xmat[self.tcp_site] for d in self.physics.datas])
        return np.arctan2(rot[:, 3], rot[:, 0])


def quat_yaw(quat: np.ndarray) -> np.ndarray:
    """Yaw about world z (N,) of orientations given as quaternions (N, 4) w, x, y, z."""
    # w z + x y and y² + z² as two einsums over column views: a third of the numpy calls of the spelled-out form
    wz_xy = np.einsum("ij,ij->i", quat[:, :2], quat[:, 3:1:-1])
    yy_zz = np.einsum("ij,ij->i", quat[:, 2:], quat[:, 2:])
    return np.arctan2(2.0 * wz_xy, 1.0 - 2.0 * yy_zz)


def nearest_grasp_yaw(current: np.ndarray, face_yaw: np.ndarray) -> np.ndarray:
    """The gripper yaw closest to ``current`` whose fingers close on a cube's faces (cube yaw mod π/2)."""
    return current + (face_yaw - current + np.pi / 4) % (np.pi / 2) - np.pi / 4


CARRY_Z = 0.1  # m, cube centre height while carrying toward a goal on the table
HOLD_LOW, HOLD_HIGH = 0.012, 0.027  # m, finger opening range (each) that counts as closed on a 4 cm cube
RELEASED = 0.03  # m, each finger at least this open: the cube is let go


class GraspTask(ArmTask):
    """A tabletop task whose expert grasps a loose 4 cm cube ("cube") and carries it to a goal point.

    Subclasses provide :meth:`place_target` (where the cube's centre must go) and set ``release``
    (open the gripper and retreat once there, as in stacking, or hold the cube there). The remaining
    path of the cube — up to the carry height, across, down to the target — gives the transport
    progress that both the dense reward and the privileged progress use.
    """

    release: ClassVar[bool] = False
    cube_half: ClassVar[float] = 0.02

    def bind(self, physics: ThreadedPhysics) -> None:
        super().bind(physics)
        model = physics.model
        joint = model.joint("cube")
        self.cube_qpos = joint.qposadr[0]
        self.cube_start = np.zeros((self.num_envs, 3))
        self.reach_start = np.ones(self.num_envs)  # tcp to cube at reset
        self.path_start = np.ones(self.num_envs)  # the cube's remaining path at reset
        self._phase = np.zeros(self.num_envs, dtype=np.int64)
        self._timer = np.zeros(self.num_envs, dtype=np.int64)

    @property
    def cube(self) -> np.ndarray:
        return self.physics.qpos[:, self.cube_qpos : self.cube_qpos + 3]

    @property
    def cube_quat(self) -> np.ndarray:
        return self.physics.qpos[:, self.cube_qpos + 3 : self.cube_qpos + 7]

    @property
    def fingers(self) -> np.ndarray:
        """Finger openings (N, 2), m each from closed."""
        return self.physics.qpos[:, self.finger_qpos]

    def place_target(self) -> np.ndarray:
        """Where the cube's centre must end up (N, 3)."""
        raise NotImplementedError

    def carry_z(self, target: np.ndarray) -> np.ndarray:
        return np.maximum(target[:, 2], CARRY_Z)

    def remaining_path(self, cube: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Length (N,) of the cube's path still to go: up to the carry height, across, down to ``target``.

        Over the target (within 2 cm in the table plane) it is the straight distance; both branches agree
        at the carry height, so the value is continuous along the expert's path and falls monotonically on it.
        """
        carry = self.carry_z(target)
        across = plane_distance(target, cube)
        far = across + np.abs(carry - cube[:, 2]) + (carry - target[:, 2])
        near = across + np.abs(cube[:, 2] - target[:, 2])
        return np.where(across > 0.02, far, near)

    def reset_cube(self, ids: np.ndarray, xy: np.ndarray, yaw: np.ndarray, joint: str = "cube") -> None:
        """Place a cube's free joint at ``xy`` (len(ids), 2) on the table with yaw ``yaw``."""
        adr = self.physics.model.joint(joint).qposadr[0]
        quat = np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=1)
        for k, i in enumerate(ids):
            qpos = self.physics.datas[i].qpos
            qpos[adr : adr + 2], qpos[adr + 2] = xy[k], self.cube_half
            qpos[adr + 3 : adr + 7] = quat[k]

    def after_reset(self, ids: np.ndarray) -> None:
        self.cube_start[ids] = self.cube[ids]
        self.reach_start[ids] = np.maximum(row_norm(self.cube[ids] - self.tcp[ids]), 1e-3)
        target = self.place_target()
        self.path_start[ids] = np.maximum(self.remaining_path(self.cube, target)[ids], 1e-3)
        self._phase[ids] = 0
        self._timer[ids] = 0

    def update(self) -> None:
        """What reward, evaluation and observation share, computed once per state: the cube relative to the
        tcp ``_cube_minus_tcp`` and their distance ``_tcp_cube``, the smaller finger opening ``_finger_min``,
        ``_grasped`` (the fingers closed on the cube), :meth:`place_target` as ``_target``, and the cube's
        remaining path ``_path`` to it."""
        cube = self.cube
        self._cube_minus_tcp = cube - self.tcp
        self._tcp_cube = row_norm(self._cube_minus_tcp)
        fingers = self.fingers
        self._finger_min = np.minimum(fingers[:, 0], fingers[:, 1])
        held = (self._finger_min > HOLD_LOW) & (np.maximum(fingers[:, 0], fingers[:, 1]) < HOLD_HIGH)
        self._grasped = held & (self._tcp_cube < 0.025)
        self._target = self.place_target()
        self._path = self.remaining_path(cube, self._target)

    def grasp_progress(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(approach in [0, 1], engaged bool, transport in [0, 1]) of the state :meth:`update` saw."""
        transport = clamp(1.0 - self._path / self.path_start, 0.0, 1.0)
        engaged = self._grasped | (transport > 0.05)
        approach = np.where(engaged, 1.0, np.maximum(1.0 - self._tcp_cube / self.reach_start, 0.0))
        return approach, engaged, transport

    # -- expert -----------------------------------------------------------------------------
    def expert(self, obs: np.ndarray) -> np.ndarray:
        """Hover over the cube, descend, close, lift to the carry height, carry, lower onto the target;
        then hold the cube there, or (``release``) open the gripper and rise.

        A per-env phase machine; a cube lost from the fingers sends that env back to hovering.
        """
        cfg = self.config
        tcp, cube, phase, timer = self.tcp, self.cube, self._phase, self._timer
        target = self.place_target()
        carry = self.carry_z(target)
        current = self.tcp_yaw()
        yaw = nearest_grasp_yaw(current, quat_yaw(self.cube_quat))
        yaw_err = np.abs(yaw - current)
        offset = tcp - cube  # hold the cube where the fingers have it
        to_cube = row_norm(tcp[:, :2] - cube[:, :2])
        hover_z = cube[:, 2] + 0.07

        phase[(phase == 0) & (to_cube < 0.008) & (yaw_err < 0.08) & (np.abs(tcp[:, 2] - hover_z) < 0.02)] = 1
        phase[(phase == 1) & (to_cube > 0.02)] = 0
        at_cube = (phase == 1) & (row_norm(tcp - cube) < 0.006)
        phase[at_cube], timer[at_cube] = 2, 0
        timer[phase == 2] += 1
        phase[(phase == 2) & (timer > 5)] = 3
        across = row_norm(target[:, :2] - cube[:, :2])
        phase[(phase == 3) & (across < 0.012) & (np.abs(cube[:, 2] - carry) < 0.02)] = 4
        if self.release:
            placed = (phase == 4) & (np.abs(cube[:, 2] - target[:, 2]) < 0.004) & (across < 0.012)
            phase[placed], timer[placed] = 5, 0
            timer[phase == 5] += 1
            phase[(phase == 5) & (timer > 4)] = 6
        lost = ((phase == 3) | (phase == 4)) & (row_norm(cube - tcp) > 0.03)
        phase[lost] = 0

        goal = np.empty_like(tcp)
        gripper = np.ones(self.num_envs)
        hover = phase == 0  # climb first, then travel above the cube
        high = tcp[:, 2] > hover_z - 0.03
        goal[:, :2] = np.where(high[:, None], cube[:, :2], tcp[:, :2])
        goal[:, 2] = hover_z
        gripper[hover | (phase == 1)] = -1.0
        descend = phase == 1
        goal[descend] = cube[descend]
        grip = phase == 2
        goal[grip] = tcp[grip]
        carrying = phase == 3  # up, then across at the carry height
        risen = cube[:, 2] > carry - 0.02
        goal[carrying, 2] = carry[carrying] + offset[carrying, 2]
        goal[carrying, :2] = np.where(risen[carrying, None], target[carrying, :2], cube[carrying, :2])
        goal[carrying, :2] += offset[carrying, :2]
        lower = phase == 4
        goal[lower] = target[lower] + offset[lower]
        if self.release:
            opened = phase == 5
            goal[opened], gripper[opened] = tcp[opened], -1.0
            retreat = phase == 6
            goal[retreat] = cube[retreat] + np.array([0.0, 0.0, 0.08])
            gripper[retreat] = -1.0
        # slower for the last centimetres down onto the cube and onto the target
        close = row_norm(goal - tcp) < 0.025
        step = np.where(((phase == 4) | (phase == 1)) & close, cfg["expert_place_step"], cfg["expert_max_step"])
        return self.servo_to(goal, yaw, gripper, step[:, None])
