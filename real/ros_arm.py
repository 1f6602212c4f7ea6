"""An :class:`~real.arm.Arm` served over ROS 2 or ROS 1, as a ros2_control arm is.

State comes from ``sensor_msgs/JointState`` (any joint order, extra joints ignored: names are mapped to
the configuration's order); targets go to the configured controller's topic. ``dry_run`` connects and
reads but never publishes a command. The arm also timestamps each command it sends and, when a state
arrives whose positions are exactly that command (an arm that echoes, like ros2_control's mock hardware),
records the command→state latency: ``bench deploy`` measures the middleware with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from real.arm import Arm, ArmError, ArmState, JointSpec
from real.config import RobotConfig


def open_link(config: RobotConfig, node_name: str) -> Any:
    """A :class:`~real.ros2.Ros2Link` or :class:`~real.ros1.Ros1Link` node for ``config.transport``."""
    try:
        if config.transport == "ros2":
            from real.ros2 import Ros2Link

            return Ros2Link(node_name)
        from real.ros1 import Ros1Link

        return Ros1Link(node_name, timeout_s=config.connect_timeout_s)
    except (ImportError, ConnectionError) as exc:
        raise ArmError(str(exc)) from None


class RosArm(Arm):
    """``config``'s robot, commanded at ``rate_hz`` (a trajectory point is reached one period later)."""

    def __init__(
        self, config: RobotConfig, rate_hz: float, dry_run: bool = False, node_name: str = "robo_reward"
    ) -> None:
        self.config, self.rate_hz, self.dry_run, self.node_name = config, rate_hz, dry_run, node_name
        self.link: Any = None
        self._state: ArmState | None = None
        self._missing: list[str] = []
        self._lock = threading.Lock()
        self._index_cache: dict[tuple[str, ...], np.ndarray | None] = {}
        self._pending: tuple[np.ndarray, float] | None = None
        self.latencies: list[float] = []  # s, command → echoed state
        self.images: dict[str, np.ndarray] = {}  # camera topic → newest uint8 (H, W, 3)
        self._publish: Callable[[list[str], np.ndarray, float], None] | None = None
        self._estop_callbacks: list[Callable[[str], None]] = []

    def observation_spec(self) -> JointSpec:
        return self.config.joints

    def action_spec(self) -> JointSpec:
        return self.config.joints

    def on_estop(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(source)`` when ``true`` arrives on the e-stop topic."""
        self._estop_callbacks.append(callback)

    def connect(self) -> None:
        config = self.config
        self.link = open_link(config, self.node_name)
        state_topic, command_topic = config.topic(config.joint_states_topic), config.topic(config.command_topic)
        self.link.subscribe_states(state_topic, config.state_qos, self._on_state)
        estop_topic = config.topic(config.estop_topic)
        self.link.subscribe_bool(estop_topic, self._on_estop)
        for topic in config.camera_topics:
            self.link.subscribe_image(config.topic(topic), lambda rgb, topic=topic: self.images.__setitem__(topic, rgb))
        if not self.dry_run:
            self._publish = self.link.command_publisher(config.controller, command_topic, config.command_qos)
        deadline = time.monotonic() + config.connect_timeout_s
        while self._state is None and time.monotonic() < deadline:
            if self._missing:
                raise ArmError(f"{state_topic} lacks joints {self._missing} that robot {config.name} commands")
            time.sleep(0.01)
        if self._state is None:
            raise ArmError(f"no joint states on {state_topic} within {config.connect_timeout_s:.0f} s "
                           f"(is the robot's driver or `robo-reward twin robot={config.name}` running?)")  # fmt: skip
        while len(self.images) < len(config.camera_topics) and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(self.images) < len(config.camera_topics):
            silent = [t for t in config.camera_topics if t not in self.images]
            raise ArmError(f"no images on camera topics {silent} within {config.connect_timeout_s:.0f} s")
        remaining = max(deadline - time.monotonic(), 0.5)
        if not self.dry_run and not self.link.wait_for_subscribers(command_topic, remaining):
            raise ArmError(f"nothing subscribes to {command_topic} (is the {config.controller} controller active?)")

    def _on_state(self, names: list[str], q: np.ndarray, dq: np.ndarray) -> None:
        received = time.monotonic()
        key = tuple(names)
        if key not in self._index_cache:
            where = {name: i for i, name in enumerate(names)}
            missing = [name for name in self.config.joints.names if name not in where]
            self._missing = missing
            self._index_cache[key] = None if missing else np.array([where[n] for n in self.config.joints.names])
        index = self._index_cache[key]
        if index is None or len(q) != len(names):
            return
        q = q[index]
        dq = dq[index] if len(dq) == len(names) else np.zeros(len(index))
        with self._lock:
            self._state = ArmState(self.config.joints.names, q, dq, received)
            if self._pending is not None and np.array_equal(q, self._pending[0]):
                self.latencies.append(received - self._pending[1])
                self._pending = None

    def _on_estop(self, value: bool) -> None:
        if value:
            for callback in self._estop_callbacks:
                callback(f"topic {self.config.topic(self.config.estop_topic)}")

    def read(self) -> ArmState:
        with self._lock:
            if self._state is None:
                raise ArmError(f"no state from robot {self.config.name} yet (connect first)")
            return self._state

    def command(self, target: np.ndarray) -> np.ndarray | None:
        if self.dry_run or self._publish is None:
            return None
        target = np.asarray(target, dtype=np.float64)
        with self._lock:
            if self._pending is None or not np.array_equal(target, self._pending[0]):
                self._pending = (target.copy(), time.monotonic())
        self._publish(list(self.config.joints.names), target, 1.0 / self.rate_hz)
        return target

    def disconnect(self) -> None:
        if self.link is not None:
            link, self.link = self.link, None
            link.close()
