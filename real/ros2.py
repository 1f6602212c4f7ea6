"""ROS 2 link (rclpy from the PyPI wheels, extra ``robo-reward[ros2]``): one node, its executor on a thread.

The arm adapter (:mod:`real.ros_arm`) and the twin (:mod:`real.twin`) speak to ROS only through a link;
:mod:`real.ros1` is the same surface on rospy. Messages are ros2_control's: ``sensor_msgs/JointState`` on
the state topic, ``std_msgs/Float64MultiArray`` (forward_position) or ``trajectory_msgs/JointTrajectory``
(joint_trajectory) on the command topic, ``std_msgs/Bool`` for the e-stop, ``sensor_msgs/Image`` cameras.

The node runs in its own rclpy context with rclpy's signal handlers off, so Ctrl-C reaches the deploy loop
(which holds the arm) instead of tearing the context down under it. ``close`` stops the executor and joins
its thread before ``try_shutdown``.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import rclpy
    from rclpy.duration import Duration
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool, Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
except ImportError as exc:  # the wheels are an extra: say how to get them
    raise ImportError(f"ROS 2 needs rclpy: pip install 'robo-reward[ros2]' ({exc})") from None

from real.images import image_to_rgb

FLUSH_S = 0.2  # longest wait for the last command's acknowledgement when closing (a vanished arm never acks)
StateCallback = Callable[[list[str], np.ndarray, np.ndarray], None]
CommandCallback = Callable[[list[str] | None, np.ndarray], None]


def qos_profile(settings: dict[str, Any]) -> QoSProfile:
    """``{reliability: best_effort|reliable, depth: N}`` → a keep-last QoS profile."""
    reliability = str(settings.get("reliability", "reliable"))
    if reliability not in ("best_effort", "reliable"):
        raise ValueError(f"qos reliability must be best_effort or reliable, got {reliability!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(settings.get("depth", 1)),
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
    )


class Ros2Link:
    """A node named ``node_name`` spinning on a background thread until :meth:`close`."""

    transport = "ros2"

    def __init__(self, node_name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name=f"{node_name}-executor", daemon=True)
        self.thread.start()
        self._closed = False
        self._commands: list[Any] = []  # command publishers: their last message is acknowledged before close

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    # -- joint states ---------------------------------------------------------------------------------
    def subscribe_states(self, topic: str, qos: dict[str, Any], callback: StateCallback) -> None:
        def on_state(msg: JointState) -> None:
            callback(list(msg.name), np.array(msg.position, dtype=np.float64), np.array(msg.velocity, dtype=np.float64))

        self.node.create_subscription(JointState, topic, on_state, qos_profile(qos))

    def state_publisher(self, topic: str, qos: dict[str, Any]) -> Callable[[list[str], np.ndarray, np.ndarray], None]:
        publisher = self.node.create_publisher(JointState, topic, qos_profile(qos))

        def publish(names: list[str], q: np.ndarray, dq: np.ndarray) -> None:
            msg = JointState(name=names, position=q.tolist(), velocity=dq.tolist())
            msg.header.stamp = self.node.get_clock().now().to_msg()
            publisher.publish(msg)

        return publish

    # -- commands -------------------------------------------------------------------------------------
    def command_publisher(
        self, controller: str, topic: str, qos: dict[str, Any]
    ) -> Callable[[list[str], np.ndarray, float], None]:
        """A function sending position targets: Float64MultiArray (the controller's joint order is the
        array's) or a one-point JointTrajectory reaching them ``duration`` seconds from now."""
        if controller == "forward_position":
            publisher = self.node.create_publisher(Float64MultiArray, topic, qos_profile(qos))
            self._commands.append(publisher)
            return lambda names, positions, duration: publisher.publish(Float64MultiArray(data=positions.tolist()))
        trajectory = self.node.create_publisher(JointTrajectory, topic, qos_profile(qos))
        self._commands.append(trajectory)

        def publish(names: list[str], positions: np.ndarray, duration: float) -> None:
            point = JointTrajectoryPoint(positions=positions.tolist())
            point.time_from_start.sec, point.time_from_start.nanosec = int(duration), int(duration % 1 * 1e9)
            trajectory.publish(JointTrajectory(joint_names=names, points=[point]))

        return publish

    def subscribe_commands(self, controller: str, topic: str, qos: dict[str, Any], callback: CommandCallback) -> None:
        """``callback(joint names or None (array order), positions)`` for each command received."""
        if controller == "forward_position":
            self.node.create_subscription(
                Float64MultiArray, topic, lambda msg: callback(None, np.array(msg.data, dtype=np.float64)),
                qos_profile(qos))  # fmt: skip
            return

        def on_trajectory(msg: JointTrajectory) -> None:
            if msg.points:  # the last point is where the trajectory ends: a position arm goes there
                callback(list(msg.joint_names), np.array(msg.points[-1].positions, dtype=np.float64))

        self.node.create_subscription(JointTrajectory, topic, on_trajectory, qos_profile(qos))

    # -- e-stop and cameras ---------------------------------------------------------------------------
    def subscribe_bool(self, topic: str, callback: Callable[[bool], None]) -> None:
        self.node.create_subscription(Bool, topic, lambda msg: callback(bool(msg.data)), qos_profile({"depth": 10}))

    def bool_publisher(self, topic: str) -> Callable[[bool], None]:
        publisher = self.node.create_publisher(Bool, topic, qos_profile({"depth": 10}))
        return lambda value: publisher.publish(Bool(data=bool(value)))

    def subscribe_image(self, topic: str, callback: Callable[[np.ndarray], None]) -> None:
        def on_image(msg: Image) -> None:
            callback(image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data)))

        self.node.create_subscription(Image, topic, on_image, qos_profile({"reliability": "best_effort"}))

    def image_publisher(self, topic: str) -> Callable[[np.ndarray], None]:
        publisher = self.node.create_publisher(Image, topic, qos_profile({"reliability": "best_effort"}))

        def publish(rgb: np.ndarray) -> None:
            height, width = rgb.shape[:2]
            msg = Image(height=height, width=width, encoding="rgb8", step=3 * width, data=array("B", rgb.tobytes()))
            msg.header.stamp = self.node.get_clock().now().to_msg()
            publisher.publish(msg)

        return publish

    def wait_for_subscribers(self, topic: str, timeout_s: float) -> bool:
        """Whether something subscribes to ``topic`` within ``timeout_s`` (discovery takes a moment)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.node.count_subscribers(topic) > 0:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for publisher in self._commands:  # the last command (the hold) reaches the arm before the node goes
            publisher.wait_for_all_acked(Duration(seconds=FLUSH_S))
        self.executor.shutdown()
        self.thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
