"""robo-reward export / rollout: a tiny real PPO run → policy.onnx + spec.json → onnxruntime in the sim."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict

import sim
from real.artifact import ONNX_FILE, SPEC_FILE, ArtifactError
from robo_reward import export as export_module
from robo_reward.cli import main
from robo_reward.config import task_config
from robo_reward.export import ExportError, export_policy
from robo_reward.export import load_checked_artifact as load_artifact
from robo_reward.rl import RslRlVecEnv
from robo_reward.rollout import rollout

CONF = Path(__file__).resolve().parents[2] / "conf"
EPISODE_STEPS = 30  # the fixture run's reach episodes: short rollouts


def write_train_run(run_dir: Path, task: str = "reach", iterations: int = 2) -> OnPolicyRunner:
    """A real (tiny) robo-train run folder: model_final.pt from rsl-rl and train_summary.json as train.py writes it.

    Returns the runner, whose in-memory actor is the reference the exported ONNX must reproduce.
    """
    overrides = [
        *(f"task={task}", "num_envs=8", f"iterations={iterations}", f"task.max_episode_steps={EPISODE_STEPS}"),
        *("algo.actor.hidden_dims=[16,16]", "algo.critic.hidden_dims=[16,16]", "algo.num_steps_per_env=8"),
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=overrides)
    config = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    vec = RslRlVecEnv(sim.make(task, num_envs=8, seed=0, config=task_config(cfg.task)))
    try:
        runner = OnPolicyRunner(vec, copy.deepcopy(config["algo"]), log_dir=None, device="cpu")
        runner.learn(num_learning_iterations=iterations)
    finally:
        vec.close()
    runner.save(str(run_dir / "model_final.pt"), infos={"config": config})
    summary = {"task": task, "task_config": task_config(cfg.task), "checkpoint": "model_final.pt", "config": config}
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return runner


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, OnPolicyRunner]:
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, write_train_run(run_dir)


@pytest.fixture(scope="module")
def artifact(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "reach_policy"
    export_policy(trained[0], out)
    return out


def leftovers(folder: Path) -> list[str]:
    """Hidden temp folders/files an interrupted or refused export would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the tasks' policy interface ------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(sim.TASKS))
def test_policy_interface_names_every_observation_and_action(task):
    with sim.make(task, num_envs=2, seed=1) as env:
        iface = env.task.policy_interface()
        obs, *_ = env.step(np.random.default_rng(0).uniform(-1, 1, size=(2, env.act_dim)))
    names, action, joints = iface["observation_names"], iface["action"], iface["joints"]
    assert len(names) == env.obs_dim == sim.TASKS[task].obs_dim and len(set(names)) == len(names)
    assert len(action["names"]) == len(action["scale"]) == env.act_dim and action["mode"] and action["semantics"]
    assert len(joints["names"]) == len(joints["lower"]) == len(joints["upper"]) > 0
    assert all(lo < hi for lo, hi in zip(joints["lower"], joints["upper"], strict=True))
    assert iface == sim.TASKS[task](1).policy_interface()  # also works before the task has physics
    json.dumps(iface)  # plain data

    # the names say what each entry holds: check them against the real observation
    value = dict(zip(names, obs[0].tolist(), strict=True))
    differences = [name for name in names if "_minus_" in name]
    for name in differences:
        first, rest = name.split("_minus_")
        second, axis = rest.rsplit("_", 1)
        assert value[name] == pytest.approx(value[f"{first}_{axis}"] - value[f"{second}_{axis}"], abs=1e-5)
    for prefix in {name[: -len("_qw")] for name in names if name.endswith("_qw")}:
        quat = [value[f"{prefix}_q{c}"] for c in "wxyz"]
        assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-4)
    assert differences or action["mode"] == "joint_torque"  # the legged robots observe no differences


def test_ee_delta_arm_describes_its_own_actions():
    iface = sim.TASKS["reach"](1, {"action_mode": "ee_delta"}).policy_interface()
    assert iface["action"]["mode"] == "ee_delta" and len(iface["action"]["names"]) == 5


# -- export ---------------------------------------------------------------------------------------
def test_onnx_reproduces_the_training_policy(trained, artifact):
    run_dir, runner = trained
    actor = runner.alg.get_policy().eval()
    assert actor.obs_normalizer.count > 0 and actor.obs_normalizer.mean.abs().max() > 0.05  # not identity

    with sim.make("reach", num_envs=16, seed=7, config={"max_episode_steps": EPISODE_STEPS}) as env:
        env.step(torch.rand(16, env.act_dim) * 2 - 1)
        real = env.observation.numpy().copy()
    wild = np.random.default_rng(0).normal(0.0, 5.0, size=(37, 23)).astype(np.float32)  # clamping is exercised
    session = ort.InferenceSession(str(artifact / ONNX_FILE), providers=["CPUExecutionProvider"])
    for obs in (real, wild, real[:1]):
        (got,) = session.run(["actions"], {"obs": obs})
        with torch.no_grad():
            policy_obs = TensorDict({"policy": torch.from_numpy(obs)}, batch_size=[len(obs)])
            expected = actor(policy_obs).clamp(-1, 1).numpy()
        assert got.shape == expected.shape == (len(obs), 7) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        assert np.abs(got).max() <= 1.0
    assert np.abs(session.run(["actions"], {"obs": wild})[0]).max() == 1.0

    spec = json.loads((artifact / SPEC_FILE).read_text())
    assert spec["task"] == "reach" and spec["task_config"]["max_episode_steps"] == EPISODE_STEPS
    assert spec["observation"]["dim"] == 23 and spec["observation"]["names"][:3] == [
        "shoulder_pan_pos", "shoulder_lift_pos", "elbow_pos"]  # fmt: skip
    assert spec["action"]["dim"] == 7 and spec["action"]["mode"] == "joint_delta"
    assert spec["action"]["scale"][0] == pytest.approx(0.05) and spec["joints"]["names"][0] == "shoulder_pan"
    assert spec["control_rate_hz"] == pytest.approx(20.0)
    assert spec["onnx"] == {"file": "policy.onnx", "input": "obs", "output": "actions", "opset": 18}
    assert spec["source"] == {"run_dir": str(run_dir.resolve()), "checkpoint": "model_final.pt", "iteration": 1}
    assert spec["commit"] is None or len(spec["commit"]) == 40
    assert datetime.fromisoformat(spec["created"]).utcoffset().total_seconds() == 0
    assert sorted(p.name for p in artifact.iterdir()) == [ONNX_FILE, SPEC_FILE]
    assert leftovers(artifact.parent) == []


def test_artifact_loader_imports_no_torch():
    loaded = "sorted(m for m in ('torch', 'rsl_rl', 'sim', 'robo_reward') if m in sys.modules)"
    code = f"import sys, real.artifact; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_export_that_disagrees_with_torch_writes_nothing(trained, tmp_path, monkeypatch):
    def off_by_a_little(self, obs):
        return self.model(obs).clamp(-1.0, 1.0) + 1e-3

    monkeypatch.setattr(export_module.OnnxPolicy, "forward", off_by_a_little)
    with pytest.raises(ExportError, match="differ from the torch policy"):
        export_policy(trained[0], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- rollout --------------------------------------------------------------------------------------
def test_rollout_runs_the_artifact_in_the_sim(artifact, tmp_path):
    video = tmp_path / "rollout.mp4"
    result = rollout(artifact, episodes=4, num_envs=2, seed=1, video=video)
    assert result["task"] == "reach" and result["episodes"] == 4 and result["num_envs"] == 2
    assert 0.0 <= result["success_rate"] <= 1.0
    assert 1 <= result["mean_length"] <= EPISODE_STEPS
    # reach's dense reward per step: -distance (< 1 m) + 5·success - 0.01·|a|² (|a|² ≤ 7)
    assert -1.07 * EPISODE_STEPS < result["mean_return"] < 5.0 * EPISODE_STEPS and result["mean_return"] != 0
    assert result["env_steps"] >= 2 * 2 and result["env_steps_per_s"] > 0
    reader = imageio.get_reader(video)
    frame = reader.get_data(0)
    assert frame.shape == (2 * 256, 3 * 256, 3) and reader.count_frames() <= EPISODE_STEPS  # envs × cameras
    reader.close()

    again = rollout(artifact, episodes=4, num_envs=2, seed=1)
    assert {k: again[k] for k in ("success_rate", "mean_return", "mean_length")} == {
        k: result[k] for k in ("success_rate", "mean_return", "mean_length")}  # fmt: skip
    assert again["video"] is None


def test_rollout_on_another_task_needs_matching_sizes(artifact):
    with pytest.raises(ValueError, match="cannot run task 'push_cube'"):
        rollout(artifact, task="push_cube", episodes=1)
    with pytest.raises(ValueError, match="unknown task 'pick'"):
        rollout(artifact, task="pick", episodes=1)


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_export_and_rollout_json(trained, artifact, tmp_path, capsys):
    out = tmp_path / "policy"
    shutil.copytree(artifact, out)
    (out / SPEC_FILE).write_text("{}")  # a broken earlier artifact: a new export replaces it
    code, stdout, _ = run_cli(capsys, "export", str(trained[0]), "--out", str(out), "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["artifact"] == str(out) and result["max_abs_diff"] < 1e-5 and result["iteration"] == 1
    assert load_artifact(out).spec["task"] == "reach" and leftovers(tmp_path) == []

    code, stdout, _ = run_cli(capsys, "rollout", str(out), "--episodes", "2", "--num-envs", "2", "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["episodes"] == 2 and result["task"] == "reach" and 0 <= result["success_rate"] <= 1


def _corrupt_spec(art: Path) -> None:
    (art / SPEC_FILE).write_text('{"format": "robo_reward.policy", ')


def _missing_onnx(art: Path) -> None:
    (art / ONNX_FILE).unlink()


def _obs_dim_20(art: Path) -> None:
    spec = json.loads((art / SPEC_FILE).read_text())
    spec["observation"] = {"dim": 20, "names": spec["observation"]["names"][:20]}
    (art / SPEC_FILE).write_text(json.dumps(spec))


def _task_ant(art: Path) -> None:  # the ONNX graph and spec agree (23), the task observes 27
    spec = json.loads((art / SPEC_FILE).read_text())
    spec["task"], spec["task_config"] = "ant", {}
    (art / SPEC_FILE).write_text(json.dumps(spec))


def _task_unknown(art: Path) -> None:
    spec = json.loads((art / SPEC_FILE).read_text())
    spec["task"] = "juggle"
    (art / SPEC_FILE).write_text(json.dumps(spec))


def _no_action(art: Path) -> None:
    spec = json.loads((art / SPEC_FILE).read_text())
    del spec["action"]
    (art / SPEC_FILE).write_text(json.dumps(spec))


def _onnx_garbage(art: Path) -> None:
    (art / ONNX_FILE).write_bytes(b"not a protobuf")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_corrupt_spec, r"spec\.json: not valid JSON"),
        (_missing_onnx, r"policy\.onnx: missing"),
        (_obs_dim_20, r"policy\.onnx: input 'obs' is tensor\(float\) \['batch', 23\], but spec\.json observation\.dim"),
        (_task_ant, r"spec\.json: key 'observation\.dim' is 23, but task 'ant' has 27"),
        (_task_unknown, r"spec\.json: key 'task' is 'juggle', unknown"),
        (_no_action, r"spec\.json: missing key 'action\.dim'"),
        (_onnx_garbage, r"policy\.onnx: not a loadable ONNX model"),
    ],
)
def test_bad_artifact_is_one_line(artifact, tmp_path, capsys, damage, message):
    art = tmp_path / "art"
    shutil.copytree(artifact, art)
    damage(art)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(art)
    video = tmp_path / "v.mp4"
    code, stdout, err = run_cli(capsys, "rollout", str(art), "--episodes", "1", "--video", str(video))
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("robo-reward rollout: error: ") and str(art) in err
    assert not video.exists()


class _RunsCode:
    """Pickles to a call of os.mkdir: what a malicious 'checkpoint' does on torch.load(weights_only=False)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _run_copy(trained, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model_final.pt", "train_summary.json"):
        shutil.copy(trained[0] / name, run / name)
    return run


def test_bad_run_folder_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    out = tmp_path / "exports" / "policy"

    def export_fails(run: Path, message: str) -> None:
        code, stdout, err = run_cli(capsys, "export", str(run), "--out", str(out))
        assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("robo-reward export: error: ") and message in err, err
        assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])

    export_fails(tmp_path / "nope", "nope: no such run folder")

    run = _run_copy(trained, tmp_path)
    marker = tmp_path / "code_ran"
    torch.save({"actor_state_dict": _RunsCode(marker), "iter": 1}, run / "model_final.pt")
    export_fails(run, "model_final.pt: loading it would run pickled code (it imports posix.mkdir); refusing")
    assert not marker.exists()

    (run / "model_final.pt").write_bytes(b"garbage")
    export_fails(run, "model_final.pt: not a torch checkpoint")

    (run / "model_final.pt").unlink()
    export_fails(run, "model_final.pt: missing")

    (run / "train_summary.json").write_text('{"task": "reach"')
    export_fails(run, "train_summary.json: not valid JSON")

    (run / "train_summary.json").write_text('{"task": "reach", "task_config": {}, "checkpoint": "model_final.pt"}')
    export_fails(run, "train_summary.json: missing key 'config'")


def test_export_refuses_to_replace_a_folder_that_is_not_an_artifact(trained, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a policy artifact; refusing to overwrite"):
        export_policy(trained[0], out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and leftovers(tmp_path) == []
