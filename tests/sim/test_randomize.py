"""Domain randomisation: seeded looks, measured effects on frames and physics, and off by default."""

import json

import mujoco
import numpy as np
import pytest

import sim
from sim.randomize import default_config
from sim.tasks.manipulation import load_scene

ON = {"randomize": {"enabled": True}}


def only(**blocks) -> dict:
    """A randomize config with everything off except ``blocks`` (e.g. ``color={...}``)."""
    cfg = default_config(
        enabled=True,
        color={group: 0.0 for group in ("object", "table", "floor", "robot")},
        light={"intensity": [1.0, 1.0], "color": 0.0, "direction": 0.0},
        camera={"position": 0.0, "rotation": 0.0, "fovy": 0.0},
        physics={"mass": [1.0, 1.0], "friction": [1.0, 1.0], "actuator_gain": [1.0, 1.0], "latency": [0, 0]},
    )
    cfg["distractors"]["count"] = [0, 0]
    for key, value in blocks.items():
        cfg[key] = {**cfg[key], **value}
    return {"randomize": cfg}


def frames_of(task: str, seed: int, config: dict | None = None, num_envs: int = 2, size: int = 48):
    with sim.make(task, num_envs=num_envs, seed=seed, config=config, render_size=(size, size)) as env:
        return env.render().numpy(), env.randomization()


def test_same_seed_same_look_different_seeds_different_looks():
    a, drawn_a = frames_of("push_cube", seed=5, config=ON)
    b, drawn_b = frames_of("push_cube", seed=5, config=ON)
    c, drawn_c = frames_of("push_cube", seed=6, config=ON)
    assert np.array_equal(a, b) and drawn_a == drawn_b
    assert json.loads(json.dumps(drawn_a)) == drawn_a  # plain JSON data
    assert drawn_a != drawn_c
    assert np.abs(a.astype(int) - c).mean() > 10
    assert drawn_a[0] != drawn_a[1]  # each env draws its own


def test_same_seed_same_look_after_auto_resets():
    """Draws come from the env's RNG at every reset, so a whole run repeats with its seed."""
    looks = []
    for _ in range(2):
        cfg = {"randomize": {"enabled": True}, "max_episode_steps": 3}
        with sim.make("reach", num_envs=2, seed=9, config=cfg, render_size=(32, 32)) as env:
            first = env.randomization()
            for _ in range(3):
                env.step(env.expert())
            assert env.randomization() != first  # the time limit reset both envs: new draws
            looks.append((env.render().numpy(), env.randomization()))
    assert np.array_equal(looks[0][0], looks[1][0]) and looks[0][1] == looks[1][1]


def red_mask(image: np.ndarray) -> np.ndarray:
    """The default red cube's pixels (H, W) in an un-randomised frame."""
    r, g, b = (image[..., k].astype(int) for k in range(3))
    return (r > 120) & (g < 60) & (b < 60)


def test_object_colour_follows_the_drawn_shift():
    """With only colours randomised the scene's geometry is the default one (the task's own reset draws
    come first from the RNG), so the default frame's red pixels are the cube's: their mean colour moves
    the way the drawn object shift says (scaled by the shading), and differs between seeds."""
    base = np.array(sim.TASKS["push_cube"].default_config()["cube_rgba"][:3])
    cube_colours = []
    for seed in range(4):
        plain, _ = frames_of("push_cube", seed, num_envs=1)
        colored, drawn = frames_of("push_cube", seed, only(color={"object": 0.4}), num_envs=1)
        mask = red_mask(plain[0, 0])  # front camera
        assert mask.sum() > 10
        expected = np.clip(base + drawn[0]["color"]["object"], 0.0, 1.0) - base  # colours stay in [0, 1]
        measured = (colored[0, 0][mask].mean(axis=0) - plain[0, 0][mask].mean(axis=0)) / 255
        moved = np.abs(expected) > 0.03
        assert moved.any()
        assert (0.3 < measured[moved] / expected[moved]).all() and (measured[moved] / expected[moved] < 1.2).all()
        cube_colours.append(colored[0, 0][mask].mean(axis=0))
    spread = np.ptp(np.stack(cube_colours), axis=0)
    assert spread.max() > 20, spread


def test_light_intensity_changes_brightness_by_seed():
    """Only light intensity randomised: the table's brightness, relative to the default frame, ranks
    the envs as their drawn intensities do; different seeds, different lighting."""
    brightness, intensity = [], []
    for seed in (0, 1, 2):
        plain, _ = frames_of("push_cube", seed, num_envs=1)
        lit, drawn = frames_of("push_cube", seed, only(light={"intensity": [0.3, 1.6]}), num_envs=1)
        brightness.append(lit[0, 0].mean() / plain[0, 0].mean())
        intensity.append(drawn[0]["light"]["intensity"])
    assert np.argsort(brightness).tolist() == np.argsort(intensity).tolist()
    assert max(brightness) - min(brightness) > 0.1


def slide_distances(friction: list[float], num_envs: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Every env's cube is launched at 0.6 m/s along +x with the arm held still; (slide, drawn friction)."""
    config = only(physics={"friction": friction})
    with sim.make("push_cube", num_envs=num_envs, seed=0, config=config) as env:
        task = env.task
        for data in env.physics.datas:
            data.qvel[task.cube_qvel : task.cube_qvel + 3] = (0.6, 0.0, 0.0)
        start = task.cube[:, :2].copy()
        hold = np.zeros((num_envs, env.act_dim), dtype=np.float32)
        hold[:, -1] = -1.0  # gripper open, as at reset
        for _ in range(10):  # 0.5 s: every cube has stopped
            env.step(hold)
        slide = np.linalg.norm(task.cube[:, :2] - start, axis=1)
        return slide, np.array([d["physics"]["friction"] for d in env.randomization()])


def test_friction_changes_sliding_distance_per_env():
    """The same launch slides further on the envs that drew low friction, in one batch: physics
    parameters are really per env while stepping."""
    slide, friction = slide_distances([0.2, 2.0])
    assert friction.max() / friction.min() > 2
    assert np.argsort(slide).tolist() == np.argsort(-friction).tolist()
    assert slide.max() > 2 * slide.min()
    plain, _ = slide_distances([1.0, 1.0])
    assert np.ptp(plain) < 0.2 * np.ptp(slide)  # without the friction draw the slides agree


def test_mass_changes_how_far_the_same_push_moves_the_cube():
    """The same 50 ms force on every cube moves the heavier ones less, in one batch."""
    config = only(physics={"mass": [0.5, 2.0]})
    with sim.make("push_cube", num_envs=4, seed=0, config=config) as env:
        task, cube_body = env.task, env.model.body("cube").id
        start = task.cube[:, :2].copy()
        hold = np.zeros((4, env.act_dim), dtype=np.float32)
        hold[:, -1] = -1.0
        for data in env.physics.datas:
            data.xfrc_applied[cube_body, 0] = 2.0  # N along +x, for one control step
        env.step(hold)
        for data in env.physics.datas:
            data.xfrc_applied[cube_body] = 0.0
        for _ in range(10):
            env.step(hold)
        assert (env.episode_step == 11).all()  # no cube left the table (no reset)
        moved = np.linalg.norm(task.cube[:, :2] - start, axis=1)
        mass = np.array([d["physics"]["mass"] for d in env.randomization()])
        assert [model.body_mass[cube_body] for model in env.physics.models] == pytest.approx(0.1 * mass)
    assert mass.max() / mass.min() > 1.5
    assert np.argsort(moved).tolist() == np.argsort(-mass).tolist()
    assert moved.max() > 3 * moved.min()


def test_action_latency_delays_the_arm():
    def pan_after(latency: int, steps: int) -> float:
        with sim.make("reach", num_envs=1, seed=0, config=only(physics={"latency": [latency, latency]})) as env:
            start = env.physics.qpos[0, env.task.arm_qpos][0]
            action = np.zeros((1, env.act_dim), dtype=np.float32)
            action[0, 0], action[0, -1] = 1.0, -1.0  # turn the shoulder, gripper open
            for _ in range(steps):
                env.step(action)
            return abs(env.physics.qpos[0, env.task.arm_qpos][0] - start)

    assert pan_after(0, 2) > 0.02  # moving after two steps
    assert pan_after(2, 2) < 0.1 * pan_after(0, 2)  # still waiting for its first command
    assert pan_after(2, 6) > 0.02


def test_off_by_default_renders_and_steps_as_the_plain_scene():
    """The default config has randomisation off: the env uses the scene as compiled (no floor, no
    distractors, one shared model), draws nothing, and renders and steps exactly like an env with it
    disabled explicitly."""
    assert sim.TASKS["push_cube"].default_config()["randomize"]["enabled"] is False
    off = {"randomize": {"enabled": False}}
    runs = []
    for config in (None, off):
        with sim.make("push_cube", num_envs=2, seed=4, config=config, render_size=(48, 48)) as env:
            assert all(model is env.model for model in env.physics.models) and env.randomization() == [{}, {}]
            assert mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, "floor") == -1
            plain = load_scene("push_cube")
            assert env.model.ngeom == plain.ngeom and np.array_equal(env.model.geom_friction, plain.geom_friction)
            frames = [env.render().numpy()]
            for _ in range(5):
                env.step(env.expert())
            frames.append(env.render().numpy())
            runs.append((np.stack(frames), env.physics.qpos.copy()))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("task", sorted(sim.TASKS))
def test_every_task_randomises(task):
    a, drawn = frames_of(task, seed=0, config=ON, num_envs=1, size=32)
    b, _ = frames_of(task, seed=0, num_envs=1, size=32)
    assert not np.array_equal(a, b)
    assert set(drawn[0]) == {"color", "light", "camera", "distractors", "physics"}


def test_a_jitter_given_as_a_range_draws_magnitudes_outside_the_training_jitter():
    # what a never-seen-appearance evaluation set uses: every draw lies beyond the training range j = lo
    config = only(
        color={"object": [0.25, 0.4], "table": [0.3, 0.45]},
        light={"direction": [0.6, 0.9]},
        camera={"position": [0.03, 0.05], "rotation": [0.05, 0.08], "fovy": [4.0, 6.0]},
    )
    with sim.make("push_cube", num_envs=16, seed=3, config=config, render_size=(32, 32)) as env:
        drawn = env.randomization()
        nominal = [np.array(d) / np.linalg.norm(d) for d in env.randomizer.light_dir]
    position = np.array([cam["position"] for d in drawn for cam in d["camera"].values()])
    rotation = np.array([cam["rotation"] for d in drawn for cam in d["camera"].values()])
    fovy = np.array([cam["fovy"] for d in drawn for cam in d["camera"].values()])
    for values, (lo, hi) in ((position, (0.03, 0.05)), (rotation, (0.05, 0.08)), (fovy, (4.0, 6.0))):
        assert np.all((np.abs(values) >= lo) & (np.abs(values) <= hi))
        assert (values > 0).any() and (values < 0).any()  # both signs
    for group, (lo, hi) in (("object", (0.25, 0.4)), ("table", (0.3, 0.45))):
        shift = np.abs([d["color"][group] for d in drawn])
        assert np.all((shift >= lo) & (shift <= hi))
    tilts = [np.arccos(np.clip(np.dot(n, np.array(d) / np.linalg.norm(d)), -1, 1))
             for e in drawn for n, d in zip(nominal, e["light"]["direction"], strict=True)]  # fmt: skip
    assert min(tilts) >= 0.6 - 1e-6 and max(tilts) <= 0.9 + 1e-6
