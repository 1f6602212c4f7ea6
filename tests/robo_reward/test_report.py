"""Sweeps: a joblib multirun of robo-train completes, and ``robo-reward report`` aggregates runs over seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robo_reward.report import ReportError, report

BIN = Path(sys.executable).parent


def fake_run(folder: Path, seed: int, reward: str, successes: list[float], to_90: float | None) -> None:
    folder.mkdir(parents=True)
    history = [{"iteration": i, "env_steps": 1000 * (i + 1), "success_rate": s} for i, s in enumerate(successes)]
    summary = {"task": "reach", "seed": seed, "success_rate_last": successes[-1], "env_steps_to_90": to_90,
               "env_steps": 1000 * len(successes), "wall_time_s": 10.0 + seed, "history": history,
               "config": {"seed": seed, "iterations": len(successes), "reward": {"name": reward}, "num_envs": 8}}
    (folder / "train_summary.json").write_text(json.dumps(summary))


def test_runs_are_grouped_by_what_differs_but_the_seed_with_mean_and_spread(tmp_path):
    fake_run(tmp_path / "a0", 0, "dense", [0.0, 0.5, 0.8], None)
    fake_run(tmp_path / "a1", 1, "dense", [0.0, 0.6, 1.0], 2000.0)
    fake_run(tmp_path / "b0", 0, "prm", [0.2, 0.9, 0.9], 2000.0)
    fake_run(tmp_path / "b1", 1, "prm", [0.1, 0.9, 0.95], 2000.0)
    fake_run(tmp_path / "b2", 2, "prm", [0.3, 0.95, 1.0], 3000.0)
    result = report([tmp_path], tmp_path / "plot.png")
    groups = {row["group"]: row for row in result["groups"]}
    assert sorted(groups) == ["reward.name=dense", "reward.name=prm"]  # iterations and seed do not split groups
    dense, prm = groups["reward.name=dense"], groups["reward.name=prm"]
    assert dense["seeds"] == [0, 1] and prm["seeds"] == [0, 1, 2]
    assert dense["success_rate_last"]["mean"] == pytest.approx(0.9)
    assert dense["success_rate_last"]["std"] == pytest.approx(0.1)
    assert dense["env_steps_to_90"] == {"mean": 2000.0, "std": 0.0, "n": 1}  # one seed never reached 90 %
    assert prm["success_rate_last"]["mean"] == pytest.approx((0.9 + 0.95 + 1.0) / 3)
    assert "| reward.name=prm | 3 | 0.95 ± 0.04 |" in result["markdown"]
    assert (tmp_path / "plot.png").stat().st_size > 1000
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="empty: holds no robo-train run"):
        report([tmp_path / "a0", tmp_path / "empty"])


def test_a_joblib_multirun_of_two_tiny_configs_completes_and_the_report_aggregates_both(tmp_path):
    sweep = tmp_path / "sweep"
    run = subprocess.run([str(BIN / "robo-train"), "-m", "task=reach", "num_envs=8", "iterations=2",
                          "eval_video.steps=0", "reward=dense,sparse", "hydra/launcher=joblib",
                          "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list(sweep.glob("*/train_summary.json"))) == 2
    shown = subprocess.run([str(BIN / "robo-reward"), "report", str(sweep), "--json", "--plot",
                            str(tmp_path / "sweep.png")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert len(result["runs"]) == 2 and sorted(g["group"] for g in result["groups"]) == [
        "reward.name=dense", "reward.name=sparse"]  # fmt: skip
    assert all(g["env_steps"]["mean"] == 2 * 24 * 8 for g in result["groups"])  # 2 iterations × 24 steps × 8 envs
    assert (tmp_path / "sweep.png").is_file()
    missing = subprocess.run([str(BIN / "robo-reward"), "report", str(tmp_path / "nope")], capture_output=True,
                             text=True)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.strip().endswith("nope: no such file or folder")
