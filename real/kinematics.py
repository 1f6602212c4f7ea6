"""Forward kinematics of the arm's MJCF: where the tool centre point is for given joint positions.

The deploy loop needs it for the policy's ``tcp_*`` observations and the safety layer for its workspace
box. MuJoCo's ``mj_kinematics`` on the robot's own model is exact for the model and costs microseconds.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np


class Kinematics:
    """``tcp(q)`` for joint positions ``q`` float (J,) of ``joint_names`` (joints of the model not named
    stay at their reference positions)."""

    def __init__(self, mjcf: Path, joint_names: tuple[str, ...], tcp_site: str) -> None:
        try:
            self.model = mujoco.MjModel.from_xml_path(str(mjcf))
        except ValueError as exc:
            raise ValueError(f"{mjcf}: not a loadable MJCF ({str(exc).splitlines()[0]})") from None
        self.data = mujoco.MjData(self.model)
        try:
            self.qpos_index = np.array([self.model.joint(name).qposadr[0] for name in joint_names])
        except KeyError as exc:
            raise ValueError(f"{mjcf}: has no joint {exc.args[0]!r} (robot joint names must be the model's)") from None
        try:
            self.site = self.model.site(tcp_site).id
        except KeyError:
            raise ValueError(f"{mjcf}: has no site {tcp_site!r} (robot key tcp_site)") from None

    def tcp(self, q: np.ndarray) -> np.ndarray:
        """Tool centre point position float64 (3,) in the model's world frame."""
        self.data.qpos[self.qpos_index] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy()
