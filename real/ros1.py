"""ROS 1 link (Debian's rospy, for older arms): the same surface and messages as :mod:`real.ros2`.

Debian installs rospy and its message packages into the system's ``dist-packages``, where their names
(``std_msgs``, ``sensor_msgs``, ...) are the ones the ROS 2 wheels use in the venv: one process can hold
only one of the two. A ROS 1 process therefore puts the system directory first only while it imports
rospy and the messages (set ``ROBO_REWARD_ROS1_PATH`` for another install). Messages are plain Python
lists (no ``numpy_msg``: it predates NumPy 2).

The node is anonymous (a unique name) and signal-free (``disable_signals``): Ctrl-C reaches the deploy
loop, which holds the arm. rospy allows one node per process and no re-initialisation.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from real.images import image_to_rgb

ROS1_PATH = os.environ.get("ROBO_REWARD_ROS1_PATH", "/usr/lib/python3/dist-packages")
MESSAGES = ("std_msgs.msg", "sensor_msgs.msg", "trajectory_msgs.msg")
FLUSH_S = 0.1
DRAIN_S = 1.0


def _import_rospy() -> tuple[Any, dict[str, Any]]:
    clash = [m for m in ("std_msgs", "sensor_msgs", "rclpy") if m in sys.modules and ROS1_PATH not in
             (getattr(sys.modules[m], "__file__", "") or "")]  # fmt: skip
    if clash:
        raise ImportError(f"ROS 1 cannot run in a process that imported ROS 2 ({clash[0]} is loaded)")
    sys.path.insert(0, ROS1_PATH)
    try:
        rospy = importlib.import_module("rospy")
        modules = {name: importlib.import_module(name) for name in MESSAGES}
    except ImportError as exc:
        raise ImportError(f"ROS 1 needs Debian's rospy (scripts/setup.sh installs python3-rospy): {exc}") from None
    finally:
        sys.path.remove(ROS1_PATH)
    return rospy, modules


rospy, _msgs = _import_rospy()
Bool, Float64MultiArray = _msgs["std_msgs.msg"].Bool, _msgs["std_msgs.msg"].Float64MultiArray
Image, JointState = _msgs["sensor_msgs.msg"].Image, _msgs["sensor_msgs.msg"].JointState
JointTrajectory = _msgs["trajectory_msgs.msg"].JointTrajectory
JointTrajectoryPoint = _msgs["trajectory_msgs.msg"].JointTrajectoryPoint
StateCallback = Callable[[list[str], np.ndarray, np.ndarray], None]
CommandCallback = Callable[[list[str] | None, np.ndarray], None]


def master_online(timeout_s: float) -> bool:
    """Whether the master at ``ROS_MASTER_URI`` answers within ``timeout_s``."""
    import rosgraph

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rosgraph.is_master_online():
            return True
        time.sleep(0.1)
    return False


class Ros1Link:
    """The process's rospy node; ``ConnectionError`` (one line) when no master answers."""

    transport = "ros1"

    def __init__(self, node_name: str, timeout_s: float = 3.0) -> None:
        uri = os.environ.get("ROS_MASTER_URI", "http://localhost:11311")
        if not master_online(timeout_s):
            raise ConnectionError(f"no ROS master answers at {uri} (ROS_MASTER_URI): start one, e.g. rosmaster --core")
        # anonymous: a second node of the same name would make the master shut the first one down
        rospy.init_node(node_name, anonymous=True, disable_signals=True, disable_rosout=True, disable_rostime=True)
        for name in ("rosout", "rospy"):  # rospy's own chatter (e.g. about a master that went away) stays quiet
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._subscribers: list[Any] = []
        self._publishers: list[Any] = []

    def now(self) -> float:
        return time.time()

    # -- joint states ---------------------------------------------------------------------------------
    def subscribe_states(self, topic: str, qos: dict[str, Any], callback: StateCallback) -> None:
        def on_state(msg: Any) -> None:
            callback(list(msg.name), np.array(msg.position, dtype=np.float64), np.array(msg.velocity, dtype=np.float64))

        self._subscribe(topic, JointState, on_state, qos)

    def state_publisher(self, topic: str, qos: dict[str, Any]) -> Callable[[list[str], np.ndarray, np.ndarray], None]:
        publisher = self._publisher(topic, JointState, qos)

        def publish(names: list[str], q: np.ndarray, dq: np.ndarray) -> None:
            msg = JointState(name=names, position=q.tolist(), velocity=dq.tolist())
            msg.header.stamp = rospy.Time.from_sec(time.time())
            publisher.publish(msg)

        return publish

    # -- commands -------------------------------------------------------------------------------------
    def command_publisher(
        self, controller: str, topic: str, qos: dict[str, Any]
    ) -> Callable[[list[str], np.ndarray, float], None]:
        if controller == "forward_position":
            publisher = self._publisher(topic, Float64MultiArray, qos)
            return lambda names, positions, duration: publisher.publish(Float64MultiArray(data=positions.tolist()))
        trajectory = self._publisher(topic, JointTrajectory, qos)

        def publish(names: list[str], positions: np.ndarray, duration: float) -> None:
            point = JointTrajectoryPoint(positions=positions.tolist())
            point.time_from_start = rospy.Duration.from_sec(duration)
            trajectory.publish(JointTrajectory(joint_names=names, points=[point]))

        return publish

    def subscribe_commands(self, controller: str, topic: str, qos: dict[str, Any], callback: CommandCallback) -> None:
        if controller == "forward_position":
            self._subscribe(topic, Float64MultiArray, lambda msg: callback(None, np.array(msg.data, dtype=float)), qos)
            return

        def on_trajectory(msg: Any) -> None:
            if msg.points:
                callback(list(msg.joint_names), np.array(msg.points[-1].positions, dtype=np.float64))

        self._subscribe(topic, JointTrajectory, on_trajectory, qos)

    # -- e-stop and cameras ---------------------------------------------------------------------------
    def subscribe_bool(self, topic: str, callback: Callable[[bool], None]) -> None:
        self._subscribe(topic, Bool, lambda msg: callback(bool(msg.data)), {"depth": 10})

    def bool_publisher(self, topic: str) -> Callable[[bool], None]:
        publisher = self._publisher(topic, Bool, {"depth": 10})
        return lambda value: publisher.publish(Bool(data=bool(value)))

    def subscribe_image(self, topic: str, callback: Callable[[np.ndarray], None]) -> None:
        def on_image(msg: Any) -> None:
            callback(image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data)))

        self._subscribe(topic, Image, on_image, {"depth": 1})

    def image_publisher(self, topic: str) -> Callable[[np.ndarray], None]:
        publisher = self._publisher(topic, Image, {"depth": 1})

        def publish(rgb: np.ndarray) -> None:
            height, width = rgb.shape[:2]
            publisher.publish(Image(height=height, width=width, encoding="rgb8", step=3 * width, data=rgb.tobytes()))

        return publish

    def wait_for_subscribers(self, topic: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        publisher = next((p for p in self._publishers if p.resolved_name == topic), None)
        while publisher is not None and time.monotonic() < deadline:
            if publisher.get_num_connections() > 0:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Shut the node down; with the master gone rospy only logs (silenced above) and returns.
        rospy sends from per-connection queue threads and has no flush: wait (up to ``DRAIN_S``) until
        every connection's queue is empty, then ``FLUSH_S`` for the write in flight, so the last command
        (the hold) leaves before the connections close."""
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and self._queued() > 0:
            time.sleep(0.005)
        time.sleep(FLUSH_S)
        rospy.signal_shutdown("robo-reward done")

    def _queued(self) -> int:
        """Messages still waiting in rospy's per-connection queues (its ``QueuedConnection._queue``)."""
        return sum(len(getattr(connection, "_queue", ()))
                   for publisher in self._publishers for connection in getattr(publisher.impl, "connections", ()))

    # -- helpers --------------------------------------------------------------------------------------
    def _publisher(self, topic: str, kind: type, qos: dict[str, Any]) -> Any:
        publisher = rospy.Publisher(topic, kind, queue_size=int(qos.get("depth", 1)),
                                    tcp_nodelay=bool(qos.get("tcp_nodelay", True)))  # fmt: skip
        self._publishers.append(publisher)
        return publisher

    def _subscribe(self, topic: str, kind: type, callback: Callable[[Any], None], qos: dict[str, Any]) -> None:
        subscriber = rospy.Subscriber(topic, kind, callback, queue_size=int(qos.get("depth", 1)),
                                      tcp_nodelay=bool(qos.get("tcp_nodelay", True)))  # fmt: skip
        self._subscribers.append(subscriber)
