"""The task registry: snake_case task id → task class, discovered from the modules of this package.

A task is one file here defining one concrete :class:`~sim.tasks.base.Task` subclass with a ``name``
(plus its MJCF in ``assets/``). Importing this package imports every module not starting with ``_``
and registers what it finds; modules that define no concrete task (``base``, ``manipulation``: shared
code) are skipped. Gymnasium ids (:mod:`sim.gym_adapters`), Hydra's ``task/<name>`` configs
(``robo_reward/config.py``), ``robo-reward info tasks`` and the test matrix all read :data:`TASKS`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from sim.tasks.base import Evaluation, Task


def discover() -> dict[str, type[Task]]:
    """Import every task module of this package; return {name: class} sorted by name."""
    found: dict[str, type[Task]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        tasks = [
            cls
            for cls in vars(module).values()
            if inspect.isclass(cls)
            and issubclass(cls, Task)
            and cls.__module__ == module.__name__
            and not inspect.isabstract(cls)
            and "name" in cls.__dict__
        ]
        if len(tasks) > 1:
            names = ", ".join(cls.__name__ for cls in tasks)
            raise TypeError(f"{module.__name__} defines {len(tasks)} tasks ({names}); one task per file")
        for cls in tasks:
            if cls.name in found:
                raise TypeError(
                    f"task name {cls.name!r} is defined twice: {found[cls.name].__module__}, {module.__name__}"
                )
            found[cls.name] = cls
    return dict(sorted(found.items()))


TASKS: dict[str, type[Task]] = discover()


def task_class(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["TASKS", "Evaluation", "Task", "discover", "task_class"]
