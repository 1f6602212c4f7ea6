"""The task registry: snake_case task id → task class, one file per task."""

from __future__ import annotations

from sim.tasks.ant import Ant
from sim.tasks.base import Evaluation, Task
from sim.tasks.push_cube import PushCube
from sim.tasks.reach import Reach

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Reach, PushCube, Ant)}


def task_class(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["TASKS", "Evaluation", "Task", "task_class"]
