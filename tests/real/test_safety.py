"""The safety layer in-process, on the twin's simulated arm (no ROS): fuzzed commands, each check, approach."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from real.arm import ArmState
from real.bench import write_mlp_artifact
from real.config import load_robot, parse_overrides
from real.deploy import action_to_target, check_spec
from real.kinematics import Kinematics
from real.safety import SafetyArm, approach
from real.twin import TwinArm

RATE = 20.0


def make_arm(*overrides: str, physics: bool = False) -> tuple[SafetyArm, TwinArm]:
    robot, _ = load_robot(parse_overrides(["robot=ros2", f"twin.physics={str(physics).lower()}", *overrides]))
    twin = TwinArm(robot)
    arm = SafetyArm(twin, robot.safety, RATE, Kinematics(robot.mjcf, robot.joints.names, robot.tcp_site))
    arm.connect()
    return arm, twin


FUZZ_ARM, FUZZ_TWIN = make_arm()
ROBOT = FUZZ_TWIN.config
SPEC_DIR = tempfile.TemporaryDirectory()  # removed at exit
PLAN = check_spec(json.loads((write_mlp_artifact(Path(SPEC_DIR.name) / "p") / "spec.json").read_text()), ROBOT)
ACT_DIM, JOINTS = 7, len(ROBOT.joints.names)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # NaN, ±inf, huge, tiny
    st.floats(-3.0, 3.0),  # around the joint ranges, where clipping decides
    st.sampled_from([0.0, 0.04, -1.0, 1.0, -2.8, 2.8, 1e308, -1e308]),
)
outputs = st.one_of(
    st.lists(floats, min_size=ACT_DIM, max_size=ACT_DIM),  # policy outputs: through the deploy's action mapping
    st.lists(floats, min_size=0, max_size=2 * JOINTS),  # commands of any length, straight to safety
    st.lists(st.floats(-3.0, 3.0), min_size=JOINTS, max_size=JOINTS),  # plausible targets, mostly too far
)


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(output=outputs)
def test_fuzzed_policy_outputs_never_reach_the_arm_outside_limits_or_max_step(output):
    before = FUZZ_TWIN.audit.count
    if len(output) == ACT_DIM:
        target = action_to_target(PLAN, ROBOT, np.array(output), FUZZ_ARM.hold_target().copy())
    else:
        target = output
    sent = FUZZ_ARM.command(target)
    audit = FUZZ_TWIN.audit
    assert audit.count == before + 1, "every command (or its hold) reaches the arm"
    assert audit.violations == {"out_of_limits": 0, "over_max_step": 0, "malformed": 0}, output
    limits = FUZZ_TWIN.config.joints
    assert sent is not None and np.isfinite(sent).all()
    assert ((sent >= limits.lower) & (sent <= limits.upper)).all()
    assert (audit.max_abs_step <= FUZZ_ARM.step_limit + 1e-12).all()


def test_fuzz_exercised_every_kind_of_intervention():
    counts = FUZZ_ARM.counts
    for reason in ("non_finite", "wrong_length", "position_limit", "max_step", "workspace"):
        assert counts[reason] > 0, f"the fuzz never triggered {reason}: {dict(counts)}"
    assert FUZZ_TWIN.audit.count >= 10_000


def test_each_check_holds_or_clips_with_a_reason():
    arm, twin = make_arm()
    hold = arm.last_target.copy()
    assert np.array_equal(arm.command(np.full(3, 0.1)), hold) and arm.counts["wrong_length"] == 1
    bad = hold.copy()
    bad[0] = np.nan
    assert np.array_equal(arm.command(bad), hold) and arm.counts["non_finite"] == 1

    step = arm.step_limit  # min(max_step, max_velocity / rate) per joint
    far = hold + 10 * step
    sent = arm.command(far)
    assert np.allclose(sent - hold, np.minimum(step, np.array(twin.config.joints.upper) - hold))
    assert arm.counts["max_step"] == 1

    low = arm.last_target.copy()
    low[1] = 1.6  # shoulder lift far forward: the tcp would go 19 cm into the table
    before = arm.last_target.copy()
    for _ in range(100):
        arm.command(low)
    assert arm.counts["workspace"] > 0
    tcp = arm.kinematics.tcp(arm.last_target)
    assert (tcp >= arm.config.workspace_low).all() and tcp[2] < 0.05  # stopped just above the table
    assert not np.array_equal(arm.last_target, before)
    assert {i.reason for i in arm.log} >= {"wrong_length", "non_finite", "max_step", "workspace"}


def test_watchdog_holds_on_stale_state_and_estop_holds_for_good():
    arm, twin = make_arm()
    hold, nudge = arm.last_target.copy(), np.r_[np.full(6, 0.01), 0.0, 0.0]  # arm joints; fingers are at their limit
    fresh = twin.read()
    twin.read = lambda: ArmState(fresh.names, fresh.q, fresh.dq, time.monotonic() - 2.5 / RATE)  # 2.5 periods old
    assert arm.is_stale()
    assert np.array_equal(arm.command(hold + nudge), hold) and arm.counts["stale_state"] == 1
    twin.read = lambda: ArmState(fresh.names, fresh.q, fresh.dq, time.monotonic() - 1.5 / RATE)  # within 2 periods
    assert not arm.is_stale() and np.allclose(arm.command(hold + nudge), hold + nudge)

    arm.estop("test")
    moved = arm.last_target.copy()
    assert np.array_equal(arm.command(moved + nudge), moved) and arm.estopped and arm.counts["estop"] == 1


def test_disabled_safety_passes_commands_through():
    arm, twin = make_arm("safety.enabled=false")
    target = arm.last_target + 0.5  # far more than max_step
    arm.command(target)
    assert np.array_equal(twin.target, np.clip(target, twin.config.joints.lower, twin.config.joints.upper))
    assert twin.audit.violations["over_max_step"] == 1 and not arm.counts


def test_approach_moves_slowly_to_the_start_pose_through_physics():
    arm, twin = make_arm("twin.initial_pose=[0.3,0.4,0.2,0.0,-0.4,0.0,0.04,0.04]", physics=True)
    goal = np.array([0.0, 0.6698, 0.0133, 0.0, -0.6833, 0.0, 0.04, 0.04])

    real_command = twin.command

    def command_and_step(target, names=None):  # the twin node steps physics in real time; here per command
        sent = real_command(target, names)
        twin.advance(1.0 / RATE)
        return sent

    twin.command = command_and_step
    seconds = approach(arm, goal, velocity=2.0, tolerance=0.03, timeout_s=10.0)
    assert np.abs(twin.read().q - goal).max() <= 0.03 and seconds > 0
    assert twin.audit.violations == {"out_of_limits": 0, "over_max_step": 0, "malformed": 0}
    assert (twin.audit.max_abs_step <= 2.0 / RATE + 1e-9).all()


def test_command_on_exit_leaves_the_arm_holding():
    arm, twin = make_arm()
    with pytest.raises(RuntimeError, match="boom"), arm:
        arm.command(arm.last_target + 0.01)
        raise RuntimeError("boom")
    assert np.array_equal(twin.target, arm.last_target) and twin.audit.count == 2
