"""``robo-reward deploy policy/ robot=ros2|ros1 [--dry-run] [--record out.h5]``: run a policy artifact on an arm.

The story: load the artifact (onnxruntime) and the robot's configuration → check the spec against the
robot — joint names and count, limits, control rate, action mode, observation names — and refuse a
mismatch before connecting → connect (first state, a subscriber on the command topic) behind the safety
layer → move slowly to the policy's start pose → at the spec's rate: read the arm, fill the observation,
run the policy, turn its action into joint targets, command them through safety → stop on success, after
``steps``, on an e-stop, when the robot goes away, or on Ctrl-C, always leaving the arm holding → report
timing and every safety intervention; ``--record`` writes the run as a demo file.

Action semantics (``joint_delta``, the tabletop tasks'): each ``<joint>_target_delta`` times its scale is
added to that joint's last target sent, clipped to the spec's limits; ``gripper`` -1..+1 is the gripper
joints' open..closed position. The base is what safety actually sent, so a clipped step is never replayed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from real.arm import ArmError
from real.artifact import PolicyArtifact, load_artifact
from real.config import RobotConfig, load_robot
from real.estop import KeyboardEstop
from real.kinematics import Kinematics
from real.observation import ObservationBuilder, parse_goal
from real.record import camera_name, write_episode
from real.ros_arm import RosArm
from real.safety import SafetyArm, approach

DELTA_SUFFIX = "_target_delta"
APPROACH_TIMEOUT_S = 30.0


class DeployError(ValueError):
    """An artifact and robot that do not fit, or a bad option: refused before any command, in one line."""


@dataclass(frozen=True)
class Plan:
    """How the policy's action maps onto the robot's commanded joints (indices into ``robot.joints``)."""

    rate_hz: float
    delta_actions: np.ndarray  # action entries that are joint target deltas
    delta_joints: np.ndarray  # the robot joints they move
    scale: np.ndarray  # rad per unit action
    lower: np.ndarray  # the spec's limits of those joints
    upper: np.ndarray
    gripper_action: int | None
    gripper_joints: np.ndarray


def check_spec(spec: dict[str, Any], robot: RobotConfig) -> Plan:
    """The artifact's spec against the robot; :class:`DeployError` naming the first mismatch."""
    if spec["action"]["mode"] != "joint_delta":
        raise DeployError(f"action mode {spec['action']['mode']!r} is not deployable (deploy runs joint_delta)")
    joints, arm = list(spec["joints"]["names"]), list(robot.arm_joints)
    if len(joints) != len(arm):
        raise DeployError(f"the policy drives {len(joints)} joints {joints}, robot {robot.name} has {len(arm)} {arm}")
    for name in joints:
        if name not in arm:
            raise DeployError(f"the policy's joint {name!r} is not a joint of robot {robot.name} (it has {arm})")
    index = robot.joints.index(joints)
    lower, upper = np.array(spec["joints"]["lower"], float), np.array(spec["joints"]["upper"], float)
    for k, name in enumerate(joints):
        rlo, rhi = robot.joints.lower[index[k]], robot.joints.upper[index[k]]
        if lower[k] < rlo - 1e-6 or upper[k] > rhi + 1e-6:
            raise DeployError(f"joint {name!r}: the policy's limits [{lower[k]:g}, {upper[k]:g}] exceed robot "
                              f"{robot.name}'s [{rlo:g}, {rhi:g}]")  # fmt: skip
    rate = float(spec["control_rate_hz"])
    if not 0 < rate <= robot.max_rate_hz:
        raise DeployError(f"the policy runs at {rate:g} Hz; robot {robot.name} takes commands at up to "
                          f"{robot.max_rate_hz:g} Hz (max_rate_hz)")  # fmt: skip
    delta_actions, delta_joints, gripper_action = [], [], None
    for k, name in enumerate(spec["action"]["names"]):
        if name.endswith(DELTA_SUFFIX) and name[: -len(DELTA_SUFFIX)] in joints:
            delta_actions.append(k)
            delta_joints.append(joints.index(name[: -len(DELTA_SUFFIX)]))
        elif name == "gripper" and robot.gripper_joints:
            gripper_action = k
        else:
            raise DeployError(f"action {name!r} has no meaning on robot {robot.name} (it takes <joint>{DELTA_SUFFIX} "
                              f"for {joints}{' and gripper' if robot.gripper_joints else ''})")  # fmt: skip
    return Plan(
        rate_hz=rate,
        delta_actions=np.array(delta_actions, dtype=np.int64),
        delta_joints=index[delta_joints],
        scale=np.array(spec["action"]["scale"], float)[delta_actions],
        lower=lower[delta_joints],
        upper=upper[delta_joints],
        gripper_action=gripper_action,
        gripper_joints=robot.joints.index(robot.gripper_joints),
    )


def action_to_target(plan: Plan, robot: RobotConfig, action: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Joint targets (A,) from a policy action, relative to the last target sent ``base`` (A,).
    NaN stays NaN (clip keeps it): refusing it is the safety layer's job, not hidden here."""
    action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    target = base.copy()
    moved = base[plan.delta_joints] + action[plan.delta_actions] * plan.scale
    target[plan.delta_joints] = np.clip(moved, plan.lower, plan.upper)
    if plan.gripper_action is not None:
        closing = (action[plan.gripper_action] + 1.0) / 2.0
        target[plan.gripper_joints] = robot.gripper_open + closing * (robot.gripper_closed - robot.gripper_open)
    return target


def executed_action(plan: Plan, robot: RobotConfig, sent: np.ndarray, base: np.ndarray, size: int) -> np.ndarray:
    """The action (in the policy's units) that the target ``sent`` amounts to: what a demo file records."""
    action = np.zeros(size)
    action[plan.delta_actions] = (sent[plan.delta_joints] - base[plan.delta_joints]) / plan.scale
    if plan.gripper_action is not None:
        span = robot.gripper_closed - robot.gripper_open
        action[plan.gripper_action] = 2.0 * (sent[plan.gripper_joints].mean() - robot.gripper_open) / span - 1.0
    return np.clip(action, -1.0, 1.0)


@dataclass
class Trace:
    """What the loop did, step by step (for the report and ``--record``)."""

    cycle_starts: list[float] = field(default_factory=list)
    inference_s: list[float] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    overruns: int = 0
    stale_cycles: int = 0


def deploy(
    artifact_dir: str | Path,
    overrides: dict[str, Any],
    dry_run: bool = False,
    record: str | Path | None = None,
    steps: int | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the artifact on the robot; return the report (``stopped`` says why the run ended).
    ``announce(line)`` is told when the control loop starts."""
    artifact = load_artifact(artifact_dir)
    robot, extras = load_robot(overrides)
    plan = check_spec(artifact.spec, robot)
    kinematics = Kinematics(robot.mjcf, robot.joints.names, robot.tcp_site)
    goal = parse_goal(extras.get("goal"))
    builder = ObservationBuilder(artifact.spec["observation"]["names"], robot.joints.names, kinematics, goal)
    task_config = artifact.spec["task_config"]
    steps = steps if steps is not None else task_config.get("max_episode_steps")
    if steps is not None and steps < 1:
        raise DeployError(f"steps must be >= 1, got {steps}")
    if record is not None and not Path(record).parent.is_dir():
        raise DeployError(f"{record}: its folder does not exist")
    ros = RosArm(robot, plan.rate_hz, dry_run=dry_run, node_name="robo_reward_deploy")
    arm = SafetyArm(ros, robot.safety, plan.rate_hz, kinematics)
    ros.on_estop(arm.estop)
    trace = Trace(frames={camera_name(t): [] for t in robot.camera_topics})
    report: dict[str, Any] = {"artifact": str(artifact.path), "robot": robot.name, "transport": robot.transport,
                              "dry_run": dry_run, "rate_hz": plan.rate_hz, "approach_s": None}  # fmt: skip
    stopped, tcp = "ctrl-c", None
    try:
        with CtrlC() as ctrl_c, KeyboardEstop(arm.estop, robot.safety.keyboard_estop), arm:
            if not dry_run:
                report["approach_s"] = _approach_start_pose(arm, robot, ctrl_c)
            if announce is not None:
                keys = " or space/enter" if robot.safety.keyboard_estop and sys.stdin.isatty() else ""
                announce(f"running at {plan.rate_hz:g} Hz on robot {robot.name}{' (dry run)' if dry_run else ''}; "
                         f"Ctrl-C stops; e-stop: {robot.topic(robot.estop_topic)}{keys}")  # fmt: skip
            stopped, tcp = _loop(arm, ros, artifact, plan, robot, builder, trace, steps, goal, ctrl_c)
    except KeyboardInterrupt:
        stopped = "ctrl-c"
    except ArmError as exc:
        if arm.estopped:
            stopped = "estop"
        elif trace.cycle_starts:  # the robot failed mid-run: report what ran, then the error
            stopped, report["error"] = "lost", str(exc)
        else:
            raise
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)  # clear the progress line
    report.update(_timing(trace, ros.latencies), steps=len(trace.states), stopped=stopped)
    report["interventions"] = dict(arm.counts)
    report["estop"] = arm.estop_reason or None
    if goal is not None and tcp is not None:
        distance = float(np.linalg.norm(goal - tcp))
        report.update(goal=goal.tolist(), tcp=np.round(tcp, 4).tolist(), distance_m=round(distance, 4))
        report["success"] = distance < float(task_config.get("success_radius", 0.0))
    if record is not None and trace.states:
        report["record"] = str(_write_record(Path(record), artifact, robot, trace, report))
    return report


class CtrlC:
    """Ctrl-C as a request that the control loop answers between cycles, never in the middle of a
    command: a KeyboardInterrupt raised inside a publish could leave the final hold one target behind
    the one the arm received. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt here, at a cycle boundary, if Ctrl-C was pressed."""
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _approach_start_pose(arm: SafetyArm, robot: RobotConfig, ctrl_c: CtrlC) -> float:
    """The slow move to the policy's start pose (arm joints) with the gripper open; seconds it took."""
    start = arm.hold_target().copy()
    start[robot.joints.index(robot.arm_joints)] = robot.start_pose
    start[robot.joints.index(robot.gripper_joints)] = robot.gripper_open
    safety = robot.safety
    return round(approach(arm, start, safety.approach_velocity, safety.approach_tolerance, APPROACH_TIMEOUT_S,
                          ctrl_c.check), 2)  # fmt: skip


def _write_record(path: Path, artifact: PolicyArtifact, robot: RobotConfig, trace: Trace, report: dict) -> Path:
    spec = artifact.spec
    env_args = {"robot": robot.name, "transport": robot.transport, "goal": report.get("goal"),
                "artifact": str(artifact.path), "observation_names": spec["observation"]["names"],
                "action_names": spec["action"]["names"], "dry_run": report["dry_run"]}  # fmt: skip
    header = {"task": artifact.task, "instruction": spec.get("instruction", artifact.task), "fps": report["rate_hz"],
              "source": f"deploy:{robot.name}", "env_args": env_args}  # fmt: skip
    frames = {name: np.stack(images) for name, images in trace.frames.items() if images}
    success = bool(report.get("success", False))
    return write_episode(path, np.stack(trace.states), np.stack(trace.actions), frames, success, header)


def _loop(arm: SafetyArm, ros: RosArm, artifact: PolicyArtifact, plan: Plan, robot: RobotConfig,
          builder: ObservationBuilder, trace: Trace, steps: int | None, goal: np.ndarray | None,
          ctrl_c: CtrlC) -> tuple[str, np.ndarray | None]:  # fmt: skip
    """The control loop at ``plan.rate_hz`` (absolute deadlines: a late cycle does not shift the next)."""
    period = 1.0 / plan.rate_hz
    radius = float(artifact.spec["task_config"].get("success_radius", 0.0))
    stop_on_success = goal is not None and radius > 0 and artifact.spec["task_config"].get("terminate_on_success")
    act_dim = artifact.act_dim
    tcp = None
    deadline = time.monotonic()
    while steps is None or len(trace.states) < steps:
        ctrl_c.check()
        if arm.estopped:
            arm.command(arm.hold_target())
            return "estop", tcp
        age = arm.state_age()
        if age > robot.lost_after_s:
            raise ArmError(f"robot {robot.name} lost: no joint states on {robot.topic(robot.joint_states_topic)} "
                           f"for over {robot.lost_after_s:g} s (its driver or the ROS graph went away); "
                           "stopped, the last command was a hold")  # fmt: skip
        if arm.is_stale():  # the watchdog: hold until the state is fresh again, without running the policy
            arm.command(arm.hold_target())
            trace.stale_cycles += 1
        else:
            trace.cycle_starts.append(time.monotonic())
            obs, tcp = builder(arm.read())
            started = time.perf_counter()
            action = artifact.act(obs[None])[0]
            trace.inference_s.append(time.perf_counter() - started)
            base = arm.hold_target().copy()
            arm.command(action_to_target(plan, robot, action, base))
            trace.states.append(obs)
            trace.actions.append(executed_action(plan, robot, arm.hold_target(), base, act_dim))
            for topic in robot.camera_topics:
                image = ros.images.get(topic)
                if image is not None:
                    trace.frames[camera_name(topic)].append(image)
            if stop_on_success and np.linalg.norm(goal - tcp) < radius:
                return "success", tcp
            if sys.stderr.isatty() and len(trace.states) % max(int(plan.rate_hz), 1) == 0:
                print(f"\rstep {len(trace.states)}", end="", file=sys.stderr, flush=True)
        deadline += period
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            trace.overruns += 1
            if delay < -period:  # far behind (a stall): restart the schedule rather than burst
                deadline = time.monotonic()
    return "steps", tcp


def _timing(trace: Trace, latencies: list[float]) -> dict[str, Any]:
    """Achieved rate, cycle and inference percentiles (ms), command→state latency if the arm echoes."""

    def ms(values: list[float] | np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)) * 1e3, 3) if len(values) else None

    starts = np.array(trace.cycle_starts)
    cycles = np.diff(starts)
    achieved = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else None
    return {
        "achieved_hz": round(achieved, 2) if achieved else None,
        "cycle_ms_p50": ms(cycles, 50), "cycle_ms_p99": ms(cycles, 99), "overruns": trace.overruns,
        "stale_cycles": trace.stale_cycles,
        "inference_ms_p50": ms(trace.inference_s, 50), "inference_ms_p99": ms(trace.inference_s, 99),
        "latency_ms_p50": ms(latencies, 50), "latency_ms_p99": ms(latencies, 99), "latency_samples": len(latencies),
    }  # fmt: skip
