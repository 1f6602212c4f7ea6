"""Learning-rate schedules shared by the reward models' training loops.

The rate is a function of the step alone, so a run resumed after a kill continues its schedule exactly.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "constant")


def check_schedule(name: str, where: str) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"{where}.lr_schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")


def learning_rate(base: float, step: int, steps: int, schedule: str = "cosine", warmup_steps: int = 100) -> float:
    """The rate for (0-based) ``step`` of ``steps``. ``cosine``: a linear warm-up over ``warmup_steps`` (at
    most a tenth of the run), then a cosine decay to zero at the last step, so the final weights are a
    settled model's rather than wherever a constant rate's step noise left them (measured on the PRM at its
    default 1,500 steps: the spread over seeds narrows, the means hold or improve; at a few hundred steps on a
    tiny model a constant rate trains more); ``constant``: ``base``."""
    if schedule == "constant":
        return base
    warmup = min(warmup_steps, steps // 10)
    if step < warmup:
        return base * (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
