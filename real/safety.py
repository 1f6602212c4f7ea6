"""The safety layer: an :class:`~real.arm.Arm` that wraps any arm and is on unless configured off.

Every command passes, in order: shape and finiteness (else hold), a fresh state (older than
``stale_periods`` control periods → hold: the watchdog), the joint position limits (clip), the step from the
last command sent (clip to ``min(max_step, max_velocity / rate)``: the velocity limit), and the workspace box
for the tool centre point of the target by forward kinematics (outside → hold). An e-stop (:meth:`estop`,
from a ROS topic or the keyboard) holds from then on. "Hold" re-sends the last command sent, which a
position controller keeps. Each intervention is counted by reason and logged (the first of each reason as a
warning), so a run ends with an account of what safety changed and why.

:func:`approach` is the slow move to the policy's start pose, through the same checks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from real.arm import Arm, ArmError, ArmState, JointSpec
from real.config import SafetyConfig
from real.kinematics import Kinematics

log = logging.getLogger(__name__)
LOG_KEEP = 1000  # interventions kept in memory (all are counted)


@dataclass(frozen=True)
class Intervention:
    """One time safety changed a command: ``stamp`` (monotonic s), ``reason`` (a short key), ``detail``."""

    stamp: float
    reason: str
    detail: str


class SafetyArm(Arm):
    """``arm`` behind the checks above, for a loop commanding at ``rate_hz``."""

    def __init__(self, arm: Arm, config: SafetyConfig, rate_hz: float, kinematics: Kinematics | None) -> None:
        self.arm, self.config, self.rate_hz, self.kinematics = arm, config, float(rate_hz), kinematics
        spec = arm.action_spec()
        self.lower, self.upper = spec.lower, spec.upper
        self.step_limit = np.minimum(config.max_step, spec.max_velocity / self.rate_hz)
        self.stale_after = config.stale_periods / self.rate_hz
        self.counts: Counter[str] = Counter()
        self.log: list[Intervention] = []
        self.last_target: np.ndarray | None = None
        self._estop = threading.Event()
        self.estop_reason = ""
        self._lock = threading.Lock()

    # -- Arm ---------------------------------------------------------------------------------------
    def observation_spec(self) -> JointSpec:
        return self.arm.observation_spec()

    def action_spec(self) -> JointSpec:
        return self.arm.action_spec()

    def connect(self) -> None:
        self.arm.connect()
        self.last_target = self.arm.hold_target()

    def read(self) -> ArmState:
        return self.arm.read()

    def disconnect(self) -> None:
        self.arm.disconnect()

    def hold_target(self) -> np.ndarray:
        """The last target sent (the arm is converging on it), else the measured position."""
        return self.last_target if self.last_target is not None else self.arm.hold_target()

    def command(self, target: np.ndarray) -> np.ndarray | None:
        """Check ``target`` and send the safe version (or a hold); return what the arm sent."""
        if not self.config.enabled:
            return self.arm.command(target)
        with self._lock:
            safe = self._check(target)
        sent = self.arm.command(safe)
        with self._lock:  # only once it left: a Ctrl-C before the send must hold the last target the arm got
            self.last_target = safe
        return sent

    # -- e-stop and accounting ----------------------------------------------------------------------
    def estop(self, source: str) -> None:
        """Stop commanding anything but a hold, for good (thread-safe: ROS callbacks and the keyboard call it)."""
        with self._lock:
            if not self._estop.is_set():
                self.estop_reason = source
                self._estop.set()
                self._intervene("estop", f"e-stop from {source}: holding position")

    @property
    def estopped(self) -> bool:
        return self._estop.is_set()

    def state_age(self) -> float:
        """Seconds since the newest state arrived."""
        return time.monotonic() - self.arm.read().stamp

    def is_stale(self) -> bool:
        return self.state_age() > self.stale_after

    def _intervene(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        if len(self.log) < LOG_KEEP:
            self.log.append(Intervention(time.monotonic(), reason, detail))
        (log.warning if self.counts[reason] == 1 else log.debug)("safety %s: %s", reason, detail)

    # -- the checks -----------------------------------------------------------------------------------
    def _check(self, target: np.ndarray) -> np.ndarray:
        hold = self.last_target if self.last_target is not None else self.arm.hold_target()
        if self._estop.is_set():
            return hold
        try:
            target = np.asarray(target, dtype=np.float64)
        except (TypeError, ValueError):
            self._intervene("malformed", "a command that is not a list of numbers: hold")
            return hold
        if target.shape != hold.shape:
            self._intervene("wrong_length", f"a command of shape {target.shape}, expected {hold.shape}: hold")
            return hold
        if not np.isfinite(target).all():
            self._intervene("non_finite", "NaN or inf in the command: hold")
            return hold
        age = self.state_age()
        if age > self.stale_after:
            self._intervene("stale_state", f"newest state is {age * 1e3:.0f} ms old: hold")
            return hold
        safe = np.clip(target, self.lower, self.upper)
        if (safe != target).any():
            joint = int(np.argmax(np.abs(safe - target)))
            self._intervene("position_limit", f"joint {self.action_spec().names[joint]} clipped to its limit")
        over = np.abs(safe - hold) > self.step_limit
        if over.any():
            joint = int(np.argmax(np.abs(safe - hold) - self.step_limit))
            self._intervene("max_step", f"joint {self.action_spec().names[joint]} step clipped")
            safe = np.where(over, hold + np.sign(safe - hold) * self.step_limit, safe)
        if self.kinematics is not None:
            tcp = self.kinematics.tcp(safe)
            if (tcp < self.config.workspace_low).any() or (tcp > self.config.workspace_high).any():
                self._intervene("workspace", f"target tcp {np.round(tcp, 3).tolist()} outside the box: hold")
                return hold
        return safe


def approach(arm: SafetyArm, goal: np.ndarray, velocity: float, tolerance: float, timeout_s: float,
             check: Callable[[], None] = lambda: None) -> float:  # fmt: skip
    """Move slowly (``velocity`` rad/s) to ``goal`` (A,), through the safety checks, and wait until the
    measured joints are within ``tolerance``; return the seconds it took. ``ArmError`` on timeout or e-stop;
    ``check()`` runs between steps (it may raise, e.g. for a Ctrl-C)."""
    period = 1.0 / arm.rate_hz
    index = arm.observation_spec().index(arm.action_spec().names)
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        check()
        error = np.abs(arm.read().q[index] - goal).max()
        if error <= tolerance:
            return time.monotonic() - start
        if arm.estopped:
            raise ArmError(f"e-stop ({arm.estop_reason}) during the approach to the start pose")
        if time.monotonic() > deadline:
            raise ArmError(f"start pose not reached in {timeout_s:.0f} s (off by {error:.3f} rad); holding")
        current = arm.last_target if arm.last_target is not None else arm.hold_target()
        arm.command(current + np.clip(goal - current, -velocity * period, velocity * period))
        time.sleep(period)
