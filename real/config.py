"""Robot configurations: ``conf/robot/<name>.yaml`` plus ``key=value`` overrides, checked into plain data.

    robo-reward deploy policy/ robot=ros2 namespace=/arm1 safety.max_step=0.05 goal=[0.45,0.1,0.2]

``robot=`` names a file in ``conf/robot/`` (or a path to one); every other ``key=value`` sets a (dotted) key
of that file, its value read as YAML (``[0.4, 0, 0.2]`` is a list), so a user's arm is one YAML file and
a one-off change is one override. Unknown keys are refused in one line, with the known keys listed.
YAML only: this module must not need Hydra (``real/`` imports nothing of the training side).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from real.arm import JointSpec

ROBOT_DIR = Path(__file__).resolve().parent.parent / "conf" / "robot"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
TRANSPORTS = ("ros2", "ros1")
CONTROLLERS = ("forward_position", "joint_trajectory")
EXTRA_KEYS = ("goal",)  # deploy inputs that are not part of a robot file


class ConfigError(ValueError):
    """A robot configuration or override that cannot be used; one line naming the key."""


@dataclass(frozen=True)
class SafetyConfig:
    """The safety layer's settings (:mod:`real.safety`); on unless ``enabled: false`` is written out."""

    enabled: bool
    max_step: float  # rad (or m) per command, every commanded joint
    workspace_low: np.ndarray  # (3,) m, box the tool centre point of every commanded target stays in
    workspace_high: np.ndarray
    stale_periods: float  # state older than this many control periods → hold
    approach_velocity: float  # rad/s, the slow move to the start pose
    approach_tolerance: float  # rad, start pose reached
    keyboard_estop: bool  # space/enter on a terminal → e-stop


@dataclass(frozen=True)
class RobotConfig:
    """One robot: transport, topics, joints and limits, arm model for kinematics, safety, twin settings."""

    name: str
    transport: str
    namespace: str
    joint_states_topic: str
    controller: str
    command_topic: str
    estop_topic: str
    state_qos: dict[str, Any]
    command_qos: dict[str, Any]
    camera_topics: list[str]
    joints: JointSpec
    gripper_joints: tuple[str, ...]
    gripper_open: float
    gripper_closed: float
    max_rate_hz: float
    connect_timeout_s: float
    lost_after_s: float
    mjcf: Path
    tcp_site: str
    start_pose: np.ndarray
    safety: SafetyConfig
    twin: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @property
    def arm_joints(self) -> tuple[str, ...]:
        """The commanded joints that are not the gripper's (the policy's ``joints.names``)."""
        return tuple(name for name in self.joints.names if name not in self.gripper_joints)

    def topic(self, name: str) -> str:
        """A topic's full name: relative names live under ``namespace``."""
        if name.startswith("/"):
            return name
        return f"{self.namespace.rstrip('/')}/{name}" if self.namespace.strip("/") else f"/{name}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["robot=ros2", "safety.max_step=0.05"]`` → ``{"robot": "ros2", "safety.max_step": 0.05}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must be key=value (e.g. robot=ros2)")
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not YAML ({str(exc).splitlines()[0]})") from None
    return out


def robot_file(name: str) -> Path:
    """``ros2`` → conf/robot/ros2.yaml; a path ending in .yaml is used as is."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else ROBOT_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ROBOT_DIR.glob("*.yaml")))
        raise ConfigError(f"robot={name}: no such robot configuration (known: {known}, or a path to a .yaml)")
    return path


def load_robot(overrides: dict[str, Any]) -> tuple[RobotConfig, dict[str, Any]]:
    """The robot named by ``overrides['robot']`` with the other overrides applied; also the extra inputs
    (``goal``) that are not robot keys."""
    overrides = dict(overrides)
    if "robot" not in overrides:
        raise ConfigError("robot=... is required (e.g. robot=ros2 or robot=ros1)")
    path = robot_file(str(overrides.pop("robot")))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a mapping of robot keys")
    extras = {key: overrides.pop(key) for key in EXTRA_KEYS if key in overrides}
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        _set(raw, key, value, path)
    return build(raw, path.stem), extras


def _set(raw: dict[str, Any], key: str, value: Any, path: Path) -> None:
    node, parts = raw, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = node if isinstance(node, dict) else {}
            known = ", ".join(sorted([*where, *(EXTRA_KEYS if i == 0 else ())]))
            raise ConfigError(f"override {key}=...: {path.name} has no key {'.'.join(parts[: i + 1])!r} "
                              f"(known: {known})")  # fmt: skip
        if i == len(parts) - 1:
            node[part] = value
        node = node[part]


def build(raw: dict[str, Any], name: str) -> RobotConfig:
    """Check types and sizes of a robot mapping and turn it into a :class:`RobotConfig`."""

    def get(key: str, kind: type | tuple[type, ...]) -> Any:
        node: Any = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"robot {name}: missing key {key!r}")
            node = node[part]
        if not isinstance(node, kind) or (isinstance(node, bool) and kind in (int, float, (int, float))):
            raise ConfigError(f"robot {name}: key {key!r} has the wrong type ({type(node).__name__})")
        return node

    def vector(key: str, size: int | None = None) -> np.ndarray:
        values = get(key, list)
        try:
            array = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"robot {name}: key {key!r} must be a list of numbers") from None
        if array.ndim != 1 or (size is not None and len(array) != size) or not np.isfinite(array).all():
            raise ConfigError(f"robot {name}: key {key!r} must be {size or 'some'} finite numbers, got {values}")
        return array

    transport, controller = get("transport", str), get("controller", str)
    if transport not in TRANSPORTS:
        raise ConfigError(f"robot {name}: key 'transport' is {transport!r}; choose from {', '.join(TRANSPORTS)}")
    if controller not in CONTROLLERS:
        raise ConfigError(f"robot {name}: key 'controller' is {controller!r}; choose from {', '.join(CONTROLLERS)}")
    names = tuple(str(n) for n in get("joints.names", list))
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"robot {name}: key 'joints.names' must be distinct joint names")
    joints = JointSpec(names, vector("joints.lower", len(names)), vector("joints.upper", len(names)),
                       vector("joints.max_velocity", len(names)))  # fmt: skip
    if (joints.lower >= joints.upper).any() or (joints.max_velocity <= 0).any():
        raise ConfigError(f"robot {name}: joints need lower < upper and max_velocity > 0")
    gripper = tuple(str(n) for n in get("gripper.joints", list))
    if not set(gripper) <= set(names):
        raise ConfigError(f"robot {name}: key 'gripper.joints' names joints not in joints.names: {list(gripper)}")
    mjcf = Path(get("mjcf", str))
    mjcf = mjcf if mjcf.is_absolute() else ASSETS / mjcf
    if not mjcf.is_file():
        raise ConfigError(f"robot {name}: key 'mjcf': {mjcf} does not exist")
    arm_count = len(names) - len(gripper)
    safety = SafetyConfig(
        enabled=bool(get("safety.enabled", bool)),
        max_step=float(get("safety.max_step", (int, float))),
        workspace_low=vector("safety.workspace.low", 3),
        workspace_high=vector("safety.workspace.high", 3),
        stale_periods=float(get("safety.stale_periods", (int, float))),
        approach_velocity=float(get("safety.approach_velocity", (int, float))),
        approach_tolerance=float(get("safety.approach_tolerance", (int, float))),
        keyboard_estop=bool(get("safety.keyboard_estop", bool)),
    )
    topic_key = f"{controller}_topic"
    return RobotConfig(
        name=name,
        transport=transport,
        namespace=str(get("namespace", str)),
        joint_states_topic=get("joint_states_topic", str),
        controller=controller,
        command_topic=get(topic_key, str),
        estop_topic=get("estop_topic", str),
        state_qos=get("qos.state", dict),
        command_qos=get("qos.command", dict),
        camera_topics=[str(t) for t in get("camera_topics", list)],
        joints=joints,
        gripper_joints=gripper,
        gripper_open=float(get("gripper.open", (int, float))),
        gripper_closed=float(get("gripper.closed", (int, float))),
        max_rate_hz=float(get("max_rate_hz", (int, float))),
        connect_timeout_s=float(get("connect_timeout_s", (int, float))),
        lost_after_s=float(get("lost_after_s", (int, float))),
        mjcf=mjcf,
        tcp_site=get("tcp_site", str),
        start_pose=vector("start_pose", arm_count),
        safety=safety,
        twin=get("twin", dict),
        raw=raw,
    )
