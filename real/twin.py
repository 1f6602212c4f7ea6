"""``robo-reward twin robot=ros2|ros1``: the project's MuJoCo arm as a ROS robot, to rehearse a deployment.

It serves what a ros2_control arm serves — ``sensor_msgs/JointState`` on the state topic at
``twin.state_rate_hz``, position targets on the configured controller's topic — from the robot file's
topics, so ``deploy robot=X`` runs against ``twin robot=X`` unchanged. Physics runs in real time with the
MJCF's position actuators (``twin.physics: false`` makes a mock arm whose state is its last command, like
ros2_control's mock hardware; with ``twin.publish_on_command`` it echoes each command at once: the
bench's loopback arm). ``twin.cameras`` renders MJCF cameras to ``camera/<name>/image_raw``.

The twin audits every command it receives against the robot's joint limits and ``safety.max_step``
(the step from the previous command): the check of what reached the arm, independent of the sender.
SIGUSR1 pauses its state publisher and SIGUSR2 resumes it (a stalled driver, for the watchdog);
SIGINT/SIGTERM stop it, writing the audit to ``--report`` as JSON.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from real.arm import Arm, ArmState, JointSpec
from real.config import ASSETS, RobotConfig
from real.ros_arm import open_link

REPORT_COMMANDS = 20_000  # commands kept with their receipt times in the report


class CommandAudit:
    """Counts commands outside the joint limits, over ``max_step`` from the previous one, malformed ones."""

    def __init__(self, joints: JointSpec, max_step: float) -> None:
        self.joints, self.max_step = joints, max_step
        self.count = 0
        self.violations: dict[str, int] = {"out_of_limits": 0, "over_max_step": 0, "malformed": 0}
        self.max_abs_step = np.zeros(len(joints.names))
        self.previous: np.ndarray | None = None
        self.log: list[tuple[float, list[float]]] = []

    def check(self, names: list[str] | None, positions: np.ndarray) -> np.ndarray | None:
        """Audit one command; return it in the robot's joint order, or None if it cannot be applied."""
        self.count += 1
        if names is not None:  # a trajectory names its joints
            if sorted(names) != sorted(self.joints.names) or len(positions) != len(names):
                self.violations["malformed"] += 1
                return None
            positions = positions[np.argsort(self.joints.index(names))]
        if len(positions) != len(self.joints.names) or not np.isfinite(positions).all():
            self.violations["malformed"] += 1
            return None
        tolerance = 1e-6  # rad: a hold is the measured position, which sits within this of the last target
        if ((positions < self.joints.lower - tolerance) | (positions > self.joints.upper + tolerance)).any():
            self.violations["out_of_limits"] += 1
        if self.previous is not None:
            step = np.abs(positions - self.previous)
            self.max_abs_step = np.maximum(self.max_abs_step, step)
            if (step > self.max_step + tolerance).any():
                self.violations["over_max_step"] += 1
        self.previous = positions
        if len(self.log) < REPORT_COMMANDS:
            self.log.append((time.monotonic(), positions.tolist()))
        return positions

    def report(self) -> dict[str, Any]:
        return {"commands": self.count, "violations": dict(self.violations),
                "max_abs_step": self.max_abs_step.round(6).tolist(), "max_step": self.max_step,
                "log": self.log}  # fmt: skip


class TwinArm(Arm):
    """The simulated arm itself, usable in-process as an :class:`Arm` (``read`` is always fresh): the
    ROS node below serves it, and tests drive it directly."""

    def __init__(self, config: RobotConfig) -> None:
        self.config = config
        twin = config.twin
        self.physics = bool(twin.get("physics", True))
        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / f"{twin.get('scene', 'reach')}.xml"))
        self.data = mujoco.MjData(self.model)
        names = config.joints.names
        self.qpos = np.array([self.model.joint(n).qposadr[0] for n in names])
        self.qvel = np.array([self.model.joint(n).dofadr[0] for n in names])
        self.actuators = np.array([self.model.actuator(n).id for n in names])
        start = np.array(twin.get("initial_pose") or [*config.start_pose, *[config.gripper_open] * 2], float)
        self.data.qpos[self.qpos] = start[: len(names)]
        self.data.ctrl[self.actuators] = start[: len(names)]
        mujoco.mj_forward(self.model, self.data)
        self.target = start[: len(names)].copy()
        self.audit = CommandAudit(config.joints, config.safety.max_step)
        self.audit.previous = self.target.copy()  # the controller's own hold: the first command is a step from it
        self.lock = threading.Lock()

    def observation_spec(self) -> JointSpec:
        return self.config.joints

    def action_spec(self) -> JointSpec:
        return self.config.joints

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def read(self) -> ArmState:
        with self.lock:
            if not self.physics:
                q, dq = self.target.copy(), np.zeros(len(self.target))
            else:
                q, dq = self.data.qpos[self.qpos].copy(), self.data.qvel[self.qvel].copy()
        return ArmState(self.config.joints.names, q, dq, time.monotonic())

    def command(self, target: np.ndarray, names: list[str] | None = None) -> np.ndarray | None:
        with self.lock:
            positions = self.audit.check(names, np.asarray(target, dtype=np.float64))
            if positions is None:
                return None
            self.target = np.clip(positions, self.config.joints.lower, self.config.joints.upper)
            self.data.ctrl[self.actuators] = self.target
            return positions

    def advance(self, seconds: float) -> None:
        """Step the physics by ``seconds`` of simulated time."""
        if self.physics:
            with self.lock:
                for _ in range(max(1, round(seconds / self.model.opt.timestep))):
                    mujoco.mj_step(self.model, self.data)


class Signals:
    """SIGINT/SIGTERM (stop) and SIGUSR1/SIGUSR2 (pause/resume the state publisher) as plain flags: a
    handler that took a lock (``Event.set``) could deadlock with the main thread it interrupted."""

    NUMBERS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.stop = self.paused = False
        self.pauses: list[tuple[str, float]] = []
        self._previous = {number: signal.signal(number, self._handle) for number in self.NUMBERS}

    def restore(self) -> None:
        """Give the process its handlers back (``serve`` may run inside a larger program, or a test)."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        if number in (signal.SIGINT, signal.SIGTERM):
            self.stop = True
            return
        self.paused = number == signal.SIGUSR1
        self.pauses.append(("pause" if self.paused else "resume", time.monotonic()))


def serve(
    config: RobotConfig,
    report: Path | None = None,
    duration_s: float | None = None,
    ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the twin node until SIGINT/SIGTERM (or ``duration_s``); return (and write) the audit. Call from
    the main thread (it installs the signal handlers); ``ready()`` once the node publishes and subscribes."""
    arm = TwinArm(config)
    signals = Signals()
    link = None
    try:
        link = open_link(config, "robo_reward_twin")
        publish_state = link.state_publisher(config.topic(config.joint_states_topic), config.state_qos)

        def publish() -> None:
            state = arm.read()
            publish_state(list(state.names), state.q, state.dq)

        echo = bool(config.twin.get("publish_on_command"))

        def on_command(names: list[str] | None, positions: np.ndarray) -> None:
            applied = arm.command(positions, names) is not None
            if applied and echo and not signals.paused:
                publish()

        link.subscribe_commands(config.controller, config.topic(config.command_topic), config.command_qos, on_command)
        cameras = Cameras(arm, link, config)
        if ready is not None:
            ready()
        period = 1.0 / float(config.twin.get("state_rate_hz", 100))
        deadline = time.monotonic()
        end = deadline + duration_s if duration_s else None
        while not signals.stop and (end is None or time.monotonic() < end):
            arm.advance(period)
            if not signals.paused:
                publish()
            cameras.maybe_publish(deadline)
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                deadline = time.monotonic()
        cameras.close()
    finally:
        if link is not None:
            link.close()
        signals.restore()
    result = {**arm.audit.report(), "pauses": signals.pauses}
    if report is not None:
        report.write_text(json.dumps(result))
    return result


class Cameras:
    """The twin's ``twin.cameras`` rendered at ``twin.camera_rate_hz`` to ``camera/<name>/image_raw``."""

    def __init__(self, arm: TwinArm, link: Any, config: RobotConfig) -> None:
        self.arm, self.names = arm, [str(name) for name in config.twin.get("cameras") or []]
        self.period = 1.0 / float(config.twin.get("camera_rate_hz", 10))
        self.next = 0.0
        self.renderer = None
        if self.names:
            size = int(config.twin.get("camera_size", 64))
            arm.model.vis.global_.offwidth = max(arm.model.vis.global_.offwidth, size)
            arm.model.vis.global_.offheight = max(arm.model.vis.global_.offheight, size)
            self.renderer = mujoco.Renderer(arm.model, size, size)
        self.publishers = [link.image_publisher(config.topic(f"camera/{name}/image_raw")) for name in self.names]

    def maybe_publish(self, now: float) -> None:
        if self.renderer is None or now < self.next:
            return
        self.next = now + self.period
        for name, publish in zip(self.names, self.publishers, strict=True):
            with self.arm.lock:
                self.renderer.update_scene(self.arm.data, camera=name)
                image = self.renderer.render()
            publish(image)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
