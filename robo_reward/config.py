"""Hydra glue: every task's ``default_config()`` becomes the config group node ``task/<name>``.

The task files in ``sim/tasks/`` stay the single source of truth for their numbers; Hydra sees them
as ``task_defaults/<name>``, which ``conf/task/<name>.yaml`` extends. So every default can be
overridden from the command line without a ``+``: ``robo-train task=push_cube task.reward.success=10``.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import sim


def register_task_defaults() -> None:
    store = ConfigStore.instance()
    for name, cls in sim.TASKS.items():
        store.store(group="task_defaults", name=name, node=cls.default_config())


def task_config(task: DictConfig) -> dict[str, Any]:
    """The ``task`` node as ``sim.make(config=...)`` takes it (everything but ``name``)."""
    config = OmegaConf.to_container(task, resolve=True)
    config.pop("name")
    return config


register_task_defaults()
