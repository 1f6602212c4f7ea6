"""The policy's observation on a robot: spec.json's ``observation.names``, filled from the arm and the user.

What a robot can fill, by name:

- ``<joint>_pos`` / ``<joint>_vel``: a joint of the robot's state (rad, rad/s; fingers m, m/s);
- ``tcp_x|y|z``: the tool centre point, by forward kinematics of the robot's MJCF;
- ``target_x|y|z`` and ``target_minus_tcp_x|y|z``: the goal the user gives (``goal=[x,y,z]``, metres in
  the arm's base frame) and its offset from the tool centre point.

Anything else (a cube's pose, say) needs a perception input this loop does not have: the artifact is
refused before connecting, in one line. Filling is one gather from a source vector, so it costs
microseconds per step.
"""

from __future__ import annotations

import numpy as np

from real.arm import ArmState
from real.kinematics import Kinematics

AXES = ("x", "y", "z")
FILLABLE = "<joint>_pos, <joint>_vel, tcp_x|y|z, target_x|y|z and target_minus_tcp_x|y|z (with goal=[x,y,z])"


class ObservationBuilder:
    """``names`` (the spec's) from states of ``joint_names`` (the robot's), with ``goal`` (3,) or None."""

    def __init__(self, names: list[str], joint_names: tuple[str, ...], kinematics: Kinematics,
                 goal: np.ndarray | None) -> None:  # fmt: skip
        self.kinematics, self.goal = kinematics, goal
        count = len(joint_names)
        # source vector layout: q (J), dq (J), tcp (3), goal (3), goal - tcp (3)
        slots = {f"{joint}_pos": i for i, joint in enumerate(joint_names)}
        slots |= {f"{joint}_vel": count + i for i, joint in enumerate(joint_names)}
        for k, axis in enumerate(AXES):
            slots[f"tcp_{axis}"] = 2 * count + k
            slots[f"target_{axis}"] = 2 * count + 3 + k
            slots[f"target_minus_tcp_{axis}"] = 2 * count + 6 + k
        unknown = [name for name in names if name not in slots]
        if unknown:
            raise ValueError(f"spec.json observes {unknown[0]!r}, which a robot cannot fill (it fills {FILLABLE})")
        self.index = np.array([slots[name] for name in names], dtype=np.int64)
        self.needs_goal = any(name.startswith("target_") for name in names)
        if self.needs_goal and goal is None:
            raise ValueError("this policy observes a target: give it as goal=[x,y,z] (metres, the arm's base frame)")
        self.source = np.zeros(2 * count + 9)
        self.source[2 * count + 3 : 2 * count + 6] = goal if goal is not None else 0.0

    def __call__(self, state: ArmState) -> tuple[np.ndarray, np.ndarray]:
        """(observation float32 (D,), tcp float64 (3,)) for ``state``."""
        count = len(state.q)
        tcp = self.kinematics.tcp(state.q)
        source = self.source
        source[:count], source[count : 2 * count] = state.q, state.dq
        source[2 * count : 2 * count + 3] = tcp
        source[2 * count + 6 :] = source[2 * count + 3 : 2 * count + 6] - tcp
        return source[self.index].astype(np.float32), tcp


def parse_goal(value: object) -> np.ndarray | None:
    """``goal=[x, y, z]`` → float64 (3,); ValueError (one line) for anything else."""
    if value is None:
        return None
    try:
        goal = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        goal = np.zeros(0)
    if goal.shape != (3,) or not np.isfinite(goal).all():
        raise ValueError(f"goal must be [x, y, z] in metres, got {value!r}")
    return goal
