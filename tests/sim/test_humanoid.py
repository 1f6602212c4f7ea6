"""humanoid's goals: success is read from the privileged pose, and each goal changes what counts."""

import numpy as np
import pytest
import torch

import sim

KNEEL = {"z": 0.948, "left_knee": -1.5708, "right_knee": -1.5708}  # thighs upright, shins flat on the floor
ARMS_UP = {
    "right_shoulder1": -1.47, "right_shoulder2": 0.36, "right_elbow": -1.558,
    "left_shoulder1": 1.47, "left_shoulder2": -0.36, "left_elbow": -1.558,
}  # fmt: skip


def evaluate_pose(goal, joints):
    """Set the humanoid's joints (and torso height ``z``) directly; return success and progress of that state."""
    with sim.make("humanoid", num_envs=1, seed=0, config={"goal": goal}) as env:
        model, data = env.model, env.physics.datas[0]
        data.qpos[:], data.qvel[:] = model.qpos0, 0.0
        for name, value in joints.items():
            if name == "quat":
                data.qpos[3:7] = value
            else:
                data.qpos[2 if name == "z" else model.joint(name).qposadr[0]] = value
        env.physics.refresh(np.arange(1))
        state = env.privileged()
        return bool(state["success"][0]), float(state["progress"][0]), env.instruction


@pytest.mark.parametrize(
    ("goal", "joints", "expected"),
    [
        ("kneel", KNEEL, True),
        ("kneel", {}, False),  # standing
        ("kneel", {**KNEEL, "left_hip_y": -1.4}, False),  # the left thigh forward: one knee up
        ("kneel", ARMS_UP, False),
        ("arms_raised", ARMS_UP, True),
        ("arms_raised", {k: v for k, v in ARMS_UP.items() if k.startswith("right")}, False),  # one arm
        ("arms_raised", {}, False),
        ("arms_raised", {**ARMS_UP, **KNEEL}, True),  # kneeling with both arms up is arms raised too
        ("arms_raised", {**ARMS_UP, "quat": [0.7071, 0.7071, 0.0, 0.0]}, False),  # lying on its side
    ],
)
def test_pose_goals_succeed_only_in_their_pose(goal, joints, expected):
    success, progress, instruction = evaluate_pose(goal, joints)
    assert success is expected, (goal, joints)
    assert (progress == 1.0) is expected
    assert instruction == {"kneel": "kneel down on the ground", "arms_raised": "raise both arms above the head"}[goal]


def test_run_rewards_forward_velocity_and_falls_terminate():
    with sim.make("humanoid", num_envs=2, seed=0) as env:
        env.reset()
        for data, speed in zip(env.physics.datas, (1.0, -1.0), strict=True):
            data.qvel[0] = speed
        env.physics.refresh(np.arange(2))
        _, _, terminated, _, info = env.step(torch.zeros(2, env.act_dim))
        velocity = np.asarray(info["reward_terms"]["goal"])
        assert velocity[0] > 0.5 and velocity[1] < -0.5 and not terminated.any()
        for data in env.physics.datas:
            data.qpos[2] = 0.5  # the torso on the floor
        env.physics.refresh(np.arange(2))
        _, _, terminated, truncated, _ = env.step(torch.zeros(2, env.act_dim))
        assert terminated.all() and not truncated.any()


def test_unknown_goal_lists_the_goals():
    with pytest.raises(ValueError, match="unknown humanoid goal 'dance'; available: run, kneel, arms_raised"):
        sim.make("humanoid", config={"goal": "dance"})
