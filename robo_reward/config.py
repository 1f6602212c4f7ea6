"""Hydra glue: every registered task's ``default_config()`` becomes the config group option ``task/<name>``.

The task files in ``sim/tasks/`` are the single source of truth for their numbers and there is no
``conf/task/*.yaml`` to keep in step: registering the config store entries below is what makes
``task=<name>`` valid for every task in :data:`sim.TASKS`. Every default can be overridden from the
command line without a ``+``: ``robo-train task=push_cube task.reward.success=10``. The same node is
also stored as ``task_defaults/<name>``, for configs that extend a task's defaults
(``defaults: [/task_defaults/push_cube@_here_, _self_]``).
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import sim


def task_node(name: str) -> dict[str, Any]:
    """The Hydra node of task ``name``: its ``default_config()`` plus ``name``."""
    return {**sim.TASKS[name].default_config(), "name": name}


def register_task_defaults() -> None:
    store = ConfigStore.instance()
    for name, cls in sim.TASKS.items():
        store.store(group="task_defaults", name=name, node=cls.default_config())
        store.store(group="task", name=name, node=task_node(name))


def task_config(task: DictConfig) -> dict[str, Any]:
    """The ``task`` node as ``sim.make(config=...)`` takes it (everything but ``name``)."""
    config = OmegaConf.to_container(task, resolve=True)
    config.pop("name")
    return config


register_task_defaults()
