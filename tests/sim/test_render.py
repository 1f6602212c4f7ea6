"""Batched multi-view rendering shows what the simulator holds."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import sim


@pytest.fixture(scope="module")
def push_frames():
    with sim.make("push_cube", num_envs=3, seed=2) as env:
        return env.render().numpy(), env.cameras


def test_shape_dtype_and_not_blank(push_frames):
    frames, cameras = push_frames
    assert frames.shape == (3, 3, 64, 64, 3) and frames.dtype == np.uint8
    assert cameras == ("front", "side", "wrist")
    assert frames.reshape(9, -1).std(axis=1).min() > 10


def test_cameras_differ(push_frames):
    frames, _ = push_frames
    for env in range(3):
        for a in range(3):
            for b in range(a + 1, 3):
                assert np.abs(frames[env, a].astype(int) - frames[env, b]).mean() > 10


def test_envs_with_different_poses_differ(push_frames):
    frames, _ = push_frames
    assert np.abs(frames[0, 0].astype(int) - frames[1, 0]).mean() > 1


def red_pixels(image):
    r, g, b = (image[..., c].astype(int) for c in range(3))
    return (r > 150) & (g < 80) & (b < 80)


def test_cube_colour_is_visible_in_front_view_where_the_cube_is(push_frames):
    frames, _ = push_frames
    for env in range(3):
        assert red_pixels(frames[env, 0]).sum() >= 4
    # moving the cube off the table removes the red from the front view
    with sim.make("push_cube", num_envs=1, seed=2) as env:
        data = env.physics.datas[0]
        data.qpos[env.task.cube_qpos : env.task.cube_qpos + 3] = [3.0, 3.0, -3.0]
        env.physics.refresh(np.arange(1))
        assert red_pixels(env.render().numpy()[0, 0]).sum() == 0
    # a visual variant: the same scene with a blue cube has no red, and about as many blue pixels
    with sim.make("push_cube", num_envs=3, seed=2, config={"cube_rgba": [0.1, 0.1, 0.9, 1.0]}) as env:
        blue = env.render().numpy()
    for env_id in range(3):
        assert red_pixels(blue[env_id, 0]).sum() == 0
        blue_count, red_count = red_pixels(blue[env_id, 0][..., ::-1]).sum(), red_pixels(frames[env_id, 0]).sum()
        assert 0.7 * red_count <= blue_count <= 1.3 * red_count


def test_render_follows_the_simulation_and_camera_subsets():
    with sim.make("reach", num_envs=2, seed=0, cameras=["wrist"], render_size=(32, 48)) as env:
        before = env.render()
        assert before.shape == (2, 1, 32, 48, 3)
        for _ in range(10):
            env.step(torch.ones(2, 7))
        assert not torch.equal(before, env.render())
    with pytest.raises(ValueError, match="unknown camera"):
        sim.make("reach", cameras=["top"]).render()


def test_many_envs_span_several_buffer_pages():
    with sim.make("reach", num_envs=5, seed=0, render_size=(64, 64)) as env:
        import sim.render as render

        small = render.MAX_BUFFER_SIDE
        render.MAX_BUFFER_SIDE = 128  # 4 tiles a page: 15 views need 4 pages
        try:
            paged = env.render().numpy()
        finally:
            render.MAX_BUFFER_SIDE = small
    with sim.make("reach", num_envs=5, seed=0) as env:
        assert np.array_equal(paged, env.render().numpy())


def test_osmesa_backend_renders_the_same_scene(tmp_path):
    out = tmp_path / "osmesa.npy"
    code = (
        "import sim, numpy as np; env = sim.make('push_cube', num_envs=2, seed=2); "
        f"np.save({str(out)!r}, env.render().numpy())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    osmesa = np.load(out)
    with sim.make("push_cube", num_envs=2, seed=2) as env:
        egl = env.render().numpy()
    assert osmesa.shape == egl.shape
    assert np.abs(osmesa.astype(int) - egl).mean() < 3
