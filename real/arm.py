"""The ``Arm`` interface every robot adapter implements (after LeRobot's ``Robot``), and the state it reports.

An arm is position-controlled: :meth:`Arm.command` takes one absolute position target per commanded joint
(``action_spec().names``, the controller's order) and returns what was actually sent — a safety layer
(:mod:`real.safety`) wraps any arm and may send less than was asked. ``observation_spec`` and
``action_spec`` describe the arm from its configuration, so a deployment can be checked before connecting.

Used as a context manager an arm connects on entry and, on any exit (an exception, Ctrl-C), commands its
last measured position once more — "hold still" for a position controller — and disconnects.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

import numpy as np

log = logging.getLogger(__name__)


class ArmError(RuntimeError):
    """A robot-side failure (no state, the graph went away, a joint missing); one line for the user."""


@dataclass(frozen=True)
class ArmState:
    """One joint-state sample. ``q``, ``dq``: float64 (J,) in ``names`` order (rad or m, per second);
    ``stamp``: ``time.monotonic()`` when it was received here (the robot's clock may differ from ours)."""

    names: tuple[str, ...]
    q: np.ndarray
    dq: np.ndarray
    stamp: float


@dataclass(frozen=True)
class JointSpec:
    """Joint names with position limits (``lower``/``upper``, float64 (J,)) and speed limits (``max_velocity``)."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    def index(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Positions of ``names`` in this spec (int (K,)); KeyError naming the first unknown joint."""
        where = {name: i for i, name in enumerate(self.names)}
        missing = [name for name in names if name not in where]
        if missing:
            raise KeyError(missing[0])
        return np.array([where[name] for name in names], dtype=np.int64)


class Arm(ABC):
    """A position-controlled arm. Subclasses implement the five methods; the context manager is shared."""

    @abstractmethod
    def observation_spec(self) -> JointSpec:
        """The joints :meth:`read` reports, in order (known without a connection)."""

    @abstractmethod
    def action_spec(self) -> JointSpec:
        """The joints :meth:`command` takes targets for, in order, with their limits."""

    @abstractmethod
    def connect(self) -> None:
        """Open the connection; return once a first state has arrived (``ArmError`` if none does)."""

    @abstractmethod
    def read(self) -> ArmState:
        """The latest state received (possibly stale: compare ``stamp`` with ``time.monotonic()``)."""

    @abstractmethod
    def command(self, target: np.ndarray) -> np.ndarray | None:
        """Send position targets float64 (A,) for ``action_spec().names``; return what was sent (None: nothing)."""

    @abstractmethod
    def disconnect(self) -> None:
        """Close the connection; safe to call twice."""

    def hold_target(self) -> np.ndarray:
        """The commanded joints' last measured positions: the target that keeps the arm where it is."""
        state = self.read()
        return state.q[self.observation_spec().index(self.action_spec().names)]

    def __enter__(self) -> Arm:
        self.connect()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.command(self.hold_target())
        except Exception as exc:  # the link may be what failed: holding is then up to the robot's own driver
            log.warning("could not command a hold on exit: %s", str(exc).splitlines()[0] if str(exc) else exc)
        finally:
            self.disconnect()
