"""A warning when the learner's shaped return climbs but the task is not getting done: reward hacking.

A learned reward can be exploited — a policy finds states the model scores high that do not finish the
task (hovering where the cube *looks* pushed, say). Its signature in the training log: the shaped
return the learner maximises keeps rising while task success stays flat or falls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Trend:
    """A least-squares line through (x, y): ``rise`` = slope × x-span, ``t`` = slope / its standard error."""

    rise: float
    t: float
    mean: float
    points: int


def trend(x: Sequence[float], y: Sequence[float]) -> Trend:
    """Fit y ≈ a + b·x; a perfect fit gets ``t = ±inf`` (0 when flat), fewer than 3 points ``t = 0``."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xs)
    if n < 3 or np.ptp(xs) == 0:
        return Trend(0.0, 0.0, float(ys.mean()) if n else float("nan"), n)
    dx = xs - xs.mean()
    slope = float(dx @ (ys - ys.mean()) / (dx @ dx))
    residual = ys - ys.mean() - slope * dx
    stderr = float(np.sqrt(residual @ residual / (n - 2) / (dx @ dx)))
    t = slope / stderr if stderr > 0 else (np.sign(slope) * np.inf if slope else 0.0)
    return Trend(slope * float(np.ptp(xs)), float(t), float(ys.mean()), n)


class RewardHackingWatch:
    """Fed once per PPO iteration; flags shaped return rising while task success does not.

    The rule, evaluated at every :meth:`update` once ``window`` iterations have been seen, over the last
    ``window`` iterations (rows whose value is ``None`` — no episode ended — are left out of that value's
    fit; a fit needs ``min_points``):

    1. the shaped return rises: its least-squares line against env steps has ``t >= t_min`` and a rise
       over the window of at least ``min_rel_rise`` × the window's mean absolute shaped return;
    2. success does not: the success-rate line does not rise by ``success_tol`` or more with ``t >= 2``
       (flat, noisy or falling), and the window's mean success rate is below ``max_success``;
    3. the task return, when given, does not rise either: not ``t >= t_min`` with a positive rise
       (a dense task reward climbing is real progress even before successes show up).

    The warning fires once all three have held for ``patience`` consecutive updates (so a single
    lucky fit on noise does not); :meth:`check` then returns it until the condition breaks. Early
    learning can look the same (the potential climbs before the first successes), which is why nothing
    is judged before the window is full: treat the flag as a prompt to watch an eval video, not a verdict.
    """

    def __init__(
        self,
        window: int = 20,
        min_points: int = 8,
        t_min: float = 4.0,
        min_rel_rise: float = 0.1,
        success_tol: float = 0.05,
        max_success: float = 0.5,
        patience: int = 3,
    ) -> None:
        if min_points < 3 or window < min_points:
            raise ValueError(f"need window >= min_points >= 3, got window={window}, min_points={min_points}")
        self.window = window
        self.min_points = min_points
        self.t_min = t_min
        self.min_rel_rise = min_rel_rise
        self.success_tol = success_tol
        self.max_success = max_success
        self.patience = patience
        self.rows: list[tuple[int, float, float | None, float | None, float | None]] = []
        self._streak = 0
        self._message: str | None = None
        self._first: tuple[int, str] | None = None
        self._flagged_iterations = 0

    def update(
        self,
        env_steps: float,
        shaped_return: float | None,
        task_return: float | None,
        success_rate: float | None,
        iteration: int | None = None,
    ) -> str | None:
        """Add one iteration (``iteration`` defaults to the number of updates so far); return :meth:`check`."""
        it = len(self.rows) if iteration is None else iteration
        self.rows.append((it, float(env_steps), _num(shaped_return), _num(task_return), _num(success_rate)))
        reason = self._evaluate()
        self._streak = self._streak + 1 if reason else 0
        self._message = None
        if reason and self._streak >= self.patience:
            self._message = f"reward hacking? iteration {it}: {reason}"
            self._flagged_iterations += 1
            if self._first is None:
                self._first = (it, self._message)
        return self._message

    def update_from_row(self, row: Mapping[str, Any]) -> str | None:
        """:meth:`update` from a trainer history row (``mean_return`` is the shaped return)."""
        return self.update(
            row["env_steps"], row.get("mean_return"), row.get("task_return"), row.get("success_rate"), row["iteration"]
        )

    def check(self) -> str | None:
        """The one-line warning if the last update met the rule (after ``patience``), else ``None``."""
        return self._message

    def summary(self) -> dict[str, Any]:
        """Plain data for train_summary.json: whether it ever fired, when first, and that first message."""
        return {
            "flagged": self._first is not None,
            "first_iteration": self._first[0] if self._first else None,
            "message": self._first[1] if self._first else None,
            "iterations_flagged": self._flagged_iterations,
            "flagged_now": self._message is not None,
            "rule": {
                "window": self.window,
                "t_min": self.t_min,
                "min_rel_rise": self.min_rel_rise,
                "success_tol": self.success_tol,
                "max_success": self.max_success,
                "patience": self.patience,
            },
        }

    def _evaluate(self) -> str | None:
        """The reason the rule holds on the current window, or ``None``."""
        if len(self.rows) < self.window:
            return None
        recent = self.rows[-self.window :]
        shaped = self._fit(recent, 2)
        success = self._fit(recent, 4)
        if shaped is None or success is None:
            return None
        scale = max(float(np.mean([abs(r[2]) for r in recent if r[2] is not None])), 1e-6)
        if shaped.t < self.t_min or shaped.rise < self.min_rel_rise * scale:
            return None
        if (success.rise >= self.success_tol and success.t >= 2.0) or success.mean >= self.max_success:
            return None
        task = self._fit(recent, 3)
        if task is not None and task.rise > 0 and task.t >= self.t_min:
            return None
        return (
            f"shaped return rose {shaped.rise:+.3g} ({shaped.rise / scale:+.0%}, t={shaped.t:.1f}) over the last "
            f"{len(recent)} iterations while success stayed at {success.mean:.2f} (change {success.rise:+.2f})"
            + ("" if task is None else f" and task return changed {task.rise:+.3g}")
        )

    def _fit(self, recent: list, column: int) -> Trend | None:
        points = [(r[1], r[column]) for r in recent if r[column] is not None]
        if len(points) < self.min_points:
            return None
        x, y = zip(*points, strict=True)
        return trend(x, y)


def _num(value: float | None) -> float | None:
    """``None`` and NaN both mean "no value this iteration"."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value
