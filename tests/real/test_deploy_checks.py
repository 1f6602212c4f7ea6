"""What deploy refuses before it connects (spec vs robot, observation, overrides), and the demo file it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from real.arm import ArmState
from real.config import ConfigError, load_robot, parse_overrides
from real.deploy import DeployError, action_to_target, check_spec, executed_action
from real.kinematics import Kinematics
from real.observation import ObservationBuilder
from real.record import write_episode
from robo_reward.cli import main as robo_reward_main

ROBOT, _ = load_robot({"robot": "ros2"})


def spec_of(artifact) -> dict:
    return json.loads((artifact / "spec.json").read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["action"].update(mode="ee_delta"), "action mode 'ee_delta' is not deployable"),
        (lambda s: s["joints"]["upper"].__setitem__(0, 3.5), r"'shoulder_pan': the policy's limits \[-2.8, 3.5\]"),
        (lambda s: s.update(control_rate_hz=0), "the policy runs at 0 Hz"),
        (lambda s: s["action"]["names"].__setitem__(6, "suction"), "action 'suction' has no meaning on robot ros2"),
    ],
)
def test_spec_mismatches_are_one_line(mlp_artifact, edit, message):
    with pytest.raises(DeployError, match=message):
        check_spec(spec_of(mlp_artifact(edit=edit)), ROBOT)


def test_observations_a_robot_cannot_fill_are_refused(mlp_artifact, capsys):
    names = spec_of(mlp_artifact())["observation"]["names"]
    kinematics = Kinematics(ROBOT.mjcf, ROBOT.joints.names, ROBOT.tcp_site)
    with pytest.raises(ValueError, match=r"spec\.json observes 'cube_x', which a robot cannot fill"):
        ObservationBuilder([*names[:-1], "cube_x"], ROBOT.joints.names, kinematics, np.zeros(3))
    with pytest.raises(ValueError, match=r"give it as goal=\[x,y,z\]"):
        ObservationBuilder(names, ROBOT.joints.names, kinematics, None)

    art = mlp_artifact(edit=lambda s: s["observation"]["names"].__setitem__(22, "cube_z"))
    assert robo_reward_main(["deploy", str(art), "robot=ros2", "goal=[0.4,0,0.2]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robo-reward deploy: error: spec.json observes 'cube_z'") and len(err.splitlines()) == 1


def test_observation_matches_the_simulated_arm(mlp_artifact):
    names = spec_of(mlp_artifact())["observation"]["names"]
    goal = np.array([0.4, 0.1, 0.2])
    builder = ObservationBuilder(names, ROBOT.joints.names, Kinematics(ROBOT.mjcf, ROBOT.joints.names, "tcp"), goal)
    q = np.r_[ROBOT.start_pose, 0.04, 0.04]
    obs, tcp = builder(ArmState(ROBOT.joints.names, q, np.arange(8.0), 0.0))
    assert obs.dtype == np.float32 and obs.shape == (23,)
    assert np.allclose(obs[:6], q[:6]) and np.allclose(obs[6:12], np.arange(6.0)) and np.allclose(obs[12:14], 0.04)
    assert np.allclose(tcp, [0.45, 0.0, 0.15], atol=2e-3)  # the home pose's tool centre point (sim/robots/arm6.py)
    assert np.allclose(obs[17:20], goal) and np.allclose(obs[20:23], goal - tcp, atol=1e-6)


def test_action_mapping_and_its_inverse(mlp_artifact):
    plan = check_spec(spec_of(mlp_artifact(scale=0.05)), ROBOT)
    base = np.r_[ROBOT.start_pose, 0.04, 0.04]
    action = np.array([1.0, -1.0, 0.5, 0.0, 0.0, 0.0, 1.0])
    target = action_to_target(plan, ROBOT, action, base)
    assert np.allclose(target[:6] - base[:6], [0.05, -0.05, 0.025, 0, 0, 0]) and np.allclose(target[6:], 0.0)
    assert np.allclose(executed_action(plan, ROBOT, target, base, 7), action)
    assert np.isnan(action_to_target(plan, ROBOT, np.full(7, np.nan), base)[:6]).all()  # left to safety


def test_overrides_and_robot_files_fail_in_one_line():
    with pytest.raises(ConfigError, match=r"robot=\.\.\. is required"):
        load_robot({})
    with pytest.raises(ConfigError, match="robot=ur5: no such robot configuration"):
        load_robot({"robot": "ur5"})
    with pytest.raises(ConfigError, match=r"ros2.yaml has no key 'safety.max_stp' \(known: .*max_step"):
        load_robot(parse_overrides(["robot=ros2", "safety.max_stp=0.1"]))
    with pytest.raises(ConfigError, match="must be key=value"):
        parse_overrides(["ros2"])
    robot, extras = load_robot(parse_overrides(["robot=ros1", "namespace=/arm1", "goal=[0.4,0,0.2]"]))
    assert robot.topic(robot.joint_states_topic) == "/arm1/joint_states" and extras == {"goal": [0.4, 0, 0.2]}
    assert robot.topic("/abs/topic") == "/abs/topic"


def test_dry_run_without_a_robot_is_one_line_robot_error(mlp_artifact, capsys, monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # this process's ROS 2 node stays on loopback
    code = robo_reward_main(["deploy", str(mlp_artifact()), "robot=ros2", "goal=[0.4,0,0.2]", "connect_timeout_s=0.5",
                             "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("robo-reward deploy: error: no joint states on /joint_states within")


def test_recorded_episode_is_a_valid_demo_file(tmp_path):
    path = write_episode(tmp_path / "run.h5", np.zeros((5, 23)), np.zeros((5, 7)),
                         {"camera_front": np.zeros((5, 8, 8, 3), np.uint8)}, True,
                         {"task": "reach", "instruction": "reach", "fps": 20.0, "source": "deploy:ros2",
                          "env_args": {"robot": "ros2"}})  # fmt: skip
    assert robo_reward_main(["validate", str(path)]) == 0
    with pytest.raises(ValueError, match="nothing to record"):
        write_episode(tmp_path / "empty.h5", np.zeros((0, 23)), np.zeros((0, 7)), {}, False, {})
    assert not list(tmp_path.glob(".*"))


def test_what_export_writes_for_reach_fits_the_robot():
    """spec.json's names, limits and action semantics come from the task's policy_interface (export.py):
    the project's arm tasks deploy on the project's robot files as they are."""
    import sim

    task = sim.TASKS["reach"](1, {})
    interface = task.policy_interface()
    spec = {"action": {"mode": interface["action"]["mode"], "names": interface["action"]["names"],
                       "scale": interface["action"]["scale"]},
            "joints": interface["joints"], "control_rate_hz": 20.0}  # fmt: skip
    plan = check_spec(spec, ROBOT)
    assert plan.gripper_action == 6 and list(plan.delta_actions) == list(range(6))
    kinematics = Kinematics(ROBOT.mjcf, ROBOT.joints.names, ROBOT.tcp_site)
    builder = ObservationBuilder(interface["observation_names"], ROBOT.joints.names, kinematics, np.zeros(3))
    assert len(builder.index) == task.obs_dim


def test_real_never_imports_the_training_side():
    """DESIGN: real/ reads only the artifact; a robot computer runs deploy and the twin without torch."""
    import subprocess
    import sys
    from pathlib import Path

    real_dir = Path(__file__).resolve().parents[2] / "real"
    for path in real_dir.glob("*.py"):
        text = path.read_text()
        assert "import robo_reward" not in text and "from robo_reward" not in text, path
    loaded = "sorted(m for m in ('torch', 'sim', 'robo_reward', 'rclpy', 'rospy') if m in sys.modules)"
    code = f"import sys, real.cli, real.deploy, real.twin, real.bench, real.safety; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # ROS client libraries load only when a link opens
