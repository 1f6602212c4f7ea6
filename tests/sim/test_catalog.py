"""`robo-reward info tasks` and `robo-reward render-tasks`: every registered task, measured and drawn."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

import sim


def cli(*args, timeout=300):
    cmd = [sys.executable, "-m", "robo_reward.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_info_tasks_lists_every_task_with_its_measured_expert_success():
    proc = cli("info", "tasks", "--json", "--episodes", "4")
    assert proc.returncode == 0, proc.stderr
    rows = {row["task"]: row for row in json.loads(proc.stdout)}
    assert list(rows) == sorted(sim.TASKS)
    for name, cls in sim.TASKS.items():
        row = rows[name]
        assert row["gym_id"] == cls.gym_id and row["cameras"] == list(cls.cameras)
        assert (row["obs_dim"], row["act_dim"]) == (cls.obs_dim, cls.act_dim)
        if cls.has_expert():
            assert row["expert_episodes"] == 4 and 0.0 <= row["expert_success"] <= 1.0
        else:
            assert row["expert_success"] is None and row["expert_episodes"] == 0
    text = cli("info", "tasks", "--no-measure").stdout.splitlines()
    assert [line.split()[0] for line in text] == sorted(sim.TASKS)


def test_render_tasks_writes_one_row_per_task(tmp_path):
    out = tmp_path / "grid.png"
    proc = cli("render-tasks", "--out", str(out), "--tasks", "reach,ant", "--size", "32")
    assert proc.returncode == 0, proc.stderr
    grid = np.asarray(Image.open(out).convert("RGB"))
    # reach: 3 cameras at the start and 3 at the expert's last step; ant: 1 camera, no expert
    assert grid.shape == (2 * 32, 6 * 32, 3)
    assert grid[32:, 32:].max() == 0  # ant's row has one tile, the rest is padding
    assert grid[:32, 3 * 32 :].std() > 5 and grid[32:, :32].std() > 5  # drawn scenes, not blank tiles


def test_render_tasks_refuses_an_unknown_task_in_one_line(tmp_path):
    proc = cli("render-tasks", "--out", str(tmp_path / "g.png"), "--tasks", "reach,fly")
    assert proc.returncode == 2
    known = ", ".join(sorted(sim.TASKS))
    assert proc.stderr.strip().splitlines()[-1].endswith(f"unknown task 'fly'; known tasks: {known}")
    assert not (tmp_path / "g.png").exists()
