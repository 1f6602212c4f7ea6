"""arm6, the project's 6-DoF arm with a parallel gripper: joints, home pose, action mapping, Jacobian IK.

Everything here describes the robot, not a task: the manipulation tasks (:mod:`sim.tasks.manipulation`),
the digital twin and the policy export read the same constants.

Action semantics (all manipulation tasks): ``action[:, :6]`` in [-1, 1] are **joint position target
deltas**, scaled by ``MAX_JOINT_DELTA`` rad per control step and accumulated into the position
actuators' targets (clipped to the joint limits); ``action[:, 6]`` is the **absolute gripper
command**, -1 fully open (8 cm) and +1 closed. Joint-space actions are what a real arm accepts over
ROS (JointTrajectory), so an exported policy needs no IK on the robot.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from sim.arrays import clamp

ASSETS = Path(__file__).resolve().parents[2] / "assets"
MJCF = ASSETS / "arm6.xml"  # the arm alone; a task scene includes it through assets/tabletop.xml

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
CAMERAS = ("front", "side", "wrist")
# ArmTask.arm_obs() (sim.tasks.manipulation) entry by entry: the first 17 observation names of every arm task
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
        "joint position targets, clipped to the joint limits (sim.tasks.manipulation.ArmTask.ee_to_joint_action); "
        "action[4] is " + GRIPPER_SEMANTICS
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


def joint_limits(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the six arm joints, in radians."""
    rng = np.array([model.joint(j).range for j in ARM_JOINTS])
    return rng[:, 0].copy(), rng[:, 1].copy()


def apply_action(ctrl: np.ndarray, action: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    """Update the actuator targets ``ctrl`` (N, 8) in place from normalised actions (N, 7)."""
    target = ctrl[:, :NUM_ARM_JOINTS] + action[:, :NUM_ARM_JOINTS] * MAX_JOINT_DELTA
    clamp(target, lower, upper, out=ctrl[:, :NUM_ARM_JOINTS])
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
