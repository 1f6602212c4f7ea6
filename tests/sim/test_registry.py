"""The registry is the only list of tasks: a new file in sim/tasks/ is a task everywhere, with no other edit."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sim
from sim.tasks import Task, discover

ROOT = Path(__file__).resolve().parents[2]

THROWAWAY = textwrap.dedent(
    '''
    """slide_block: a block on a rail, pushed to x = 0.3 (a throwaway task written by a test)."""

    from typing import Any

    import mujoco
    import numpy as np

    from sim.tasks.base import Evaluation, Task

    XML = """
    <mujoco>
      <worldbody>
        <camera name="above" pos="0 0 1.5"/>
        <geom name="floor" type="plane" size="1 1 0.1"/>
        <body name="block" pos="0 0 0.05">
          <joint name="x" type="slide" axis="1 0 0"/>
          <geom type="box" size="0.05 0.05 0.05" mass="1"/>
        </body>
      </worldbody>
      <actuator><motor joint="x" gear="5"/></actuator>
    </mujoco>
    """


    class SlideBlock(Task):
        name = "slide_block"
        cameras = ("above",)
        stage_names = ("moving", "there")
        stage_captions = ("the block slides along its rail", "the block is at the mark")
        obs_dim = 2
        act_dim = 1
        instruction = "slide the block to the mark"

        @staticmethod
        def default_config() -> dict[str, Any]:
            return {"substeps": 5, "max_episode_steps": 20, "goal": 0.3, "reward": {"distance": 1.0}}

        def build_model(self):
            return mujoco.MjModel.from_xml_string(XML)

        def reset(self, ids, rng):
            for i in ids:
                mujoco.mj_resetData(self.physics.model, self.physics.datas[i])
            self.physics.ctrl[ids] = 0.0

        def apply_action(self, action):
            self.physics.ctrl[:] = action

        def observe(self):
            return np.concatenate([self.physics.qpos, self.physics.qvel], axis=1).astype(np.float32)

        def reward_terms(self, action):
            return {"distance": -np.abs(self.physics.qpos[:, 0] - self.config["goal"])}

        def evaluate(self):
            success = np.abs(self.physics.qpos[:, 0] - self.config["goal"]) < 0.02
            progress = np.clip(self.physics.qpos[:, 0] / self.config["goal"], 0.0, 1.0)
            return Evaluation(success, progress, success.astype(np.int64), success)
    '''
)

PROBE = textwrap.dedent(
    """
    import json

    import gymnasium
    from gymnasium.utils.env_checker import check_env

    import sim
    from robo_reward.app import compose_config
    from robo_reward.config import task_config

    cls = sim.TASKS["slide_block"]
    env = gymnasium.make(cls.gym_id)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()
    cfg = compose_config("train", ["task=slide_block", "task.goal=0.25", "task.reward.distance=2"])
    with sim.make(cfg.task.name, num_envs=2, config=task_config(cfg.task)) as batched:
        config = batched.task.config
    print(json.dumps({"tasks": sorted(sim.TASKS), "gym_id": cls.gym_id, "config": config}))
    """
)


def test_every_task_module_defines_one_registered_task():
    assert discover() == sim.TASKS
    for name, cls in sim.TASKS.items():
        assert cls.name == name and issubclass(cls, Task)
        assert cls.__module__ == f"sim.tasks.{name}"  # one file per task, named after it
        assert len(cls.stage_captions) == len(cls.stage_names)
        assert cls.gym_id.startswith("robo_reward/") and cls.gym_id.endswith("-v0")
    assert len({cls.gym_id for cls in sim.TASKS.values()}) == len(sim.TASKS)


def test_a_new_task_file_is_a_task_in_the_registry_gymnasium_and_hydra(tmp_path):
    """Copy the packages, add one file to sim/tasks/ and nothing else: the task is everywhere."""
    for package in ("sim", "assets", "conf", "robo_reward", "real"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "sim" / "tasks" / "slide_block.py").write_text(THROWAWAY)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tasks"] == sorted([*sim.TASKS, "slide_block"])
    assert result["gym_id"] == "robo_reward/SlideBlock-v0"
    assert result["config"]["goal"] == 0.25 and result["config"]["reward"] == {"distance": 2}
    # the copy's CLI lists it too
    proc = subprocess.run(
        [sys.executable, "-m", "robo_reward.cli", "info", "tasks", "--json", "--no-measure"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert [row["task"] for row in rows] == result["tasks"]


def test_a_module_with_two_tasks_is_refused(tmp_path, monkeypatch):
    import sim.tasks as package

    body = THROWAWAY + "\n\nclass SlideBlockAgain(SlideBlock):\n    name = 'slide_block_again'\n"
    (tmp_path / "two_tasks.py").write_text(body)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    with pytest.raises(TypeError, match="one task per file"):
        discover()
