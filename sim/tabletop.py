"""The tabletop arm shared by the manipulation tasks: indices, home pose, action mapping, Jacobian IK.

Action semantics (all manipulation tasks): ``action[:, :6]`` in [-1, 1] are **joint position target
deltas**, scaled by ``MAX_JOINT_DELTA`` rad per control step and accumulated into the position
actuators' targets (clipped to the joint limits); ``action[:, 6]`` is the **absolute gripper
command**, -1 fully open (8 cm) and +1 closed. Joint-space actions are what a real arm accepts over
ROS (JointTrajectory), so an exported policy needs no IK on the robot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import mujoco
import numpy as np

from sim.physics import ThreadedPhysics
from sim.randomize import SceneParts, add_scenery
from sim.tasks.base import Task

ASSETS = Path(__file__).resolve().parent.parent / "assets"

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "forearm_roll", "wrist_pitch", "tool_roll")
FINGER_JOINTS = ("left_finger", "right_finger")
NUM_ARM_JOINTS = len(ARM_JOINTS)
ACTION_DIM = NUM_ARM_JOINTS + 1
# Gripper pointing straight down (found by IK) with the tool centre at (0.45, 0, 0.15).
HOME_QPOS = np.array([0.0, 0.6698, 0.0133, 0.0, -0.6833, 0.0])
MAX_JOINT_DELTA = 0.05  # rad per control step: 1 rad/s at 20 Hz
ACTION_MODES = ("joint_delta", "ee_delta")
EE_ACTION_DIM = 5  # dx, dy, dz, dyaw, gripper
MAX_EE_STEP = 0.02  # m per control step for the tool centre point in ee_delta mode (0.4 m/s at 20 Hz)
MAX_EE_YAW_STEP = 0.15  # rad per control step of gripper yaw in ee_delta mode
EE_MIN_Z = 0.012  # m, lowest tcp target in ee_delta mode (the finger tips stay above the table)
FINGER_OPEN = 0.04  # m per finger
TCP_SITE = "tcp"
FLOOR_Z = -0.75  # m, the floor a randomised scene adds under the table (its top is at z = 0)
# what domain randomisation recolours in every arm scene; a task adds its objects (dataclasses.replace)
ARM_SCENE_PARTS = SceneParts(
    table_geoms=("table",), floor_geoms=("floor",), robot_bodies=("arm_base",), distractors=True
)
CAMERAS = ("front", "side", "wrist")
# ArmTask.arm_obs() entry by entry: the first 17 observation names of every arm task
ARM_OBS_NAMES = (
    *(f"{joint}_pos" for joint in ARM_JOINTS),
    *(f"{joint}_vel" for joint in ARM_JOINTS),
    *(f"{finger}_pos" for finger in FINGER_JOINTS),
    "tcp_x",
    "tcp_y",
    "tcp_z",
)
GRIPPER_SEMANTICS = "the absolute gripper command: -1 fully open (8 cm between the fingers), +1 closed, linear between"
# per action mode: the exported policy's spec.json text, and each action entry's name and scale (units per unit action)
ACTION_SEMANTICS = {
    "joint_delta": (
        f"action[0:{NUM_ARM_JOINTS}] in [-1, 1] times scale (rad) is added each control step to the joint position "
        f"targets (at reset: the measured joints), clipped to the joint limits; action[{NUM_ARM_JOINTS}] is "
        + GRIPPER_SEMANTICS
    ),
    "ee_delta": (
        "action[0:3] in [-1, 1] times scale (m) moves the tool centre point from its measured position (world frame, "
        f"target z at least {EE_MIN_Z} m); action[3] times scale (rad) turns the downward-pointing gripper about "
        "world z from its measured yaw; one damped-least-squares IK step on the same arm model turns this into "
        "joint position targets, clipped to the joint limits (sim.tabletop.ArmTask.ee_to_joint_action); action[4] is "
        + GRIPPER_SEMANTICS
    ),
}
ACTION_ENTRIES = {
    "joint_delta": [*((f"{joint}_target_delta", MAX_JOINT_DELTA) for joint in ARM_JOINTS), ("gripper", 1.0)],
    "ee_delta": [
        *((f"tcp_d{axis}", MAX_EE_STEP) for axis in "xyz"),
        ("gripper_dyaw", MAX_EE_YAW_STEP),
        ("gripper", 1.0),
    ],
}


def load_scene(name: str) -> mujoco.MjModel:
    """Compile ``assets/<name>.xml`` (which includes the shared tabletop and arm)."""
    return mujoco.MjModel.from_xml_path(str(ASSETS / f"{name}.xml"))


def joint_limits(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the six arm joints, in radians."""
    rng = np.array([model.joint(j).range for j in ARM_JOINTS])
    return rng[:, 0].copy(), rng[:, 1].copy()


def apply_action(ctrl: np.ndarray, action: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    """Update the actuator targets ``ctrl`` (N, 8) in place from normalised actions (N, 7)."""
    target = ctrl[:, :NUM_ARM_JOINTS] + action[:, :NUM_ARM_JOINTS] * MAX_JOINT_DELTA
    np.clip(target, lower, upper, out=ctrl[:, :NUM_ARM_JOINTS])
    finger = (1.0 - action[:, NUM_ARM_JOINTS]) * (0.5 * FINGER_OPEN)
    ctrl[:, NUM_ARM_JOINTS] = finger
    ctrl[:, NUM_ARM_JOINTS + 1] = finger


def home_ctrl(qpos_arm: np.ndarray, gripper_open: bool = True) -> np.ndarray:
    """Actuator targets (N, 8) that hold the given arm joints with the gripper open or closed."""
    finger = FINGER_OPEN if gripper_open else 0.0
    fingers = np.full((len(qpos_arm), 2), finger)
    return np.concatenate([qpos_arm, fingers], axis=1)


def rotation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Rotation vector (N, 3) taking ``current`` (N, 3, 3) to ``desired`` (N, 3, 3), world frame."""
    rel = desired @ np.swapaxes(current, 1, 2)
    skew = 0.5 * np.stack(
        [rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], axis=1
    )
    sin = np.linalg.norm(skew, axis=1, keepdims=True)
    cos = np.clip((np.trace(rel, axis1=1, axis2=2)[:, None] - 1.0) * 0.5, -1.0, 1.0)
    angle = np.arctan2(sin, cos)
    return skew * np.where(sin > 1e-9, angle / np.maximum(sin, 1e-9), 1.0)


def yaw_matrix(yaw: np.ndarray) -> np.ndarray:
    """Gripper-down orientations (N, 3, 3) rotated by ``yaw`` about the world z axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.zeros((len(yaw), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    return rot


class TcpJacobian:
    """Per-env Jacobians of the tool centre point, for the scripted experts' IK.

    Needs current ``mj_kinematics`` on each MjData (the engine keeps it for arm tasks); ``mj_comPos``
    is computed here, off the env's hot path, since only the experts need Jacobians.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.site = model.site(TCP_SITE).id
        self.dofs = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def __call__(self, datas: list[mujoco.MjData]) -> tuple[np.ndarray, np.ndarray]:
        """Return (J (N, 6, 6) stacking position and rotation rows, tcp rotation (N, 3, 3))."""
        jac = np.empty((len(datas), 6, NUM_ARM_JOINTS))
        rot = np.empty((len(datas), 3, 3))
        for i, data in enumerate(datas):
            mujoco.mj_comPos(self.model, data)
            mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
            jac[i, :3] = self._jacp[:, self.dofs]
            jac[i, 3:] = self._jacr[:, self.dofs]
            rot[i] = data.site_xmat[self.site].reshape(3, 3)
        return jac, rot


def ik_action(
    jac: np.ndarray,
    pos_error: np.ndarray,
    rot_error: np.ndarray,
    qpos: np.ndarray,
    ctrl: np.ndarray,
    gripper: np.ndarray,
    damping: float = 1e-3,
) -> np.ndarray:
    """Normalised action (N, 7) whose joint targets are ``qpos`` plus a damped-least-squares step.

    The step moves the tcp by ``pos_error`` (N, 3) and turns it by ``rot_error`` (N, 3); targets are
    taken relative to the measured joints (not the previous targets) so servo lag cannot wind up.
    """
    err = np.concatenate([pos_error, rot_error], axis=1)[:, :, None]
    jac_t = np.swapaxes(jac, 1, 2)
    dq = (jac_t @ np.linalg.solve(jac @ jac_t + damping * np.eye(6), err))[:, :, 0]
    action = np.empty((len(jac), ACTION_DIM))
    action[:, :NUM_ARM_JOINTS] = np.clip((qpos + dq - ctrl) / MAX_JOINT_DELTA, -1.0, 1.0)
    action[:, NUM_ARM_JOINTS] = gripper
    return action


def row_norm(vec: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row (N, D) -> (N,); a few µs cheaper than np.linalg.norm per call."""
    return np.sqrt(np.einsum("ij,ij->i", vec, vec))


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
        self.arm_qpos = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.arm_qvel = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.finger_qpos = np.array([model.joint(j).qposadr[0] for j in FINGER_JOINTS])
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

    def servo_to(self, target: np.ndarray, yaw: np.ndarray, gripper: np.ndarray, max_step: float) -> np.ndarray:
        """Expert primitive: action moving the tcp toward ``target`` (N, 3) at gripper yaw ``yaw`` (N,)."""
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
