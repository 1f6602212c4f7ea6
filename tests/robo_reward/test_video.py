"""Videos and plots for people: every view at 256 px with its camera, row, step and outcome written on it,
curves with a legend, and evaluation plots that show failed episodes next to successful ones."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from robo_reward.data import DemoWriter, Episode
from robo_reward.data.view import view
from robo_reward.models.evaluate import episodes_to_plot
from robo_reward.video import VIEW_PX, labelled_tile, resize_views


def test_labelled_tile_is_256_px_per_view_and_writes_only_in_the_corner():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 3, 64, 64, 3), dtype=np.uint8)  # 2 envs, 3 cameras
    status = [("step 3 · success 0/1", (255, 255, 255)), ("step 3 · success 1/1", (120, 255, 120))]
    tile = labelled_tile(frames, ["front", "side", "wrist"], ["env 0", "env 1"], status)
    raw = resize_views(frames).transpose(0, 2, 1, 3, 4).reshape(2 * VIEW_PX, 3 * VIEW_PX, 3)
    assert tile.shape == raw.shape == (2 * VIEW_PX, 3 * VIEW_PX, 3)
    for row in range(2):
        for col in range(3):
            y, x = row * VIEW_PX, col * VIEW_PX
            corner = (slice(y, y + 30), slice(x, x + 100))
            far = (slice(y + VIEW_PX // 2, y + VIEW_PX), slice(x + VIEW_PX // 2, x + VIEW_PX))
            assert (tile[corner] != raw[corner]).mean() > 0.3  # the camera name and status are drawn there
            np.testing.assert_array_equal(tile[far], raw[far])  # and nothing else is covered


def test_view_writes_labelled_cameras_curves_and_a_legend(tmp_path):
    path = tmp_path / "demo.h5"
    length = 12
    frames = {cam: np.full((length, 32, 32, 3), 90, np.uint8) for cam in ("front", "wrist")}
    zeros = np.zeros((length, 2), np.float32)
    with DemoWriter(path, cameras=["front", "wrist"], task="reach", instruction="reach", fps=10.0) as writer:
        writer.add(Episode(frames=frames, state=zeros, actions=zeros, rewards=np.zeros(length, np.float32),
                           dones=(np.arange(length) == length - 1).astype(np.uint8), success=False, source="test",
                           privileged={"progress": np.linspace(0, 0.6, length, dtype=np.float32)}))  # fmt: skip
    result = view(path, 0, tmp_path / "demo.mp4")
    video = iio.imread(tmp_path / "demo.mp4")
    assert result["curves"] == ["privileged/progress"] and len(video) == length
    assert video.shape[2] == 2 * VIEW_PX and video.shape[1] > VIEW_PX  # two 256-px views, curves underneath
    plain = video[:, VIEW_PX // 2 : VIEW_PX, VIEW_PX // 2 : VIEW_PX].astype(int)
    corner = video[:, 4:30, 4:90].astype(int)
    assert np.abs(plain - 90).mean() < 8 and np.abs(corner - 90).mean() > 20  # text only in the corner
    failure_red = corner[..., 0] - corner[..., 1]
    assert failure_red.max() > 60  # the failed outcome is written in red


def test_evaluation_plots_show_failures_next_to_successes():
    success = np.array([True] * 10 + [False] * 3)
    chosen = episodes_to_plot(success, 6)
    assert len(chosen) == 6 and sum(not success[k] for k in chosen) == 3
    assert episodes_to_plot(np.array([True, False]), 6) == [0, 1]
    assert sum(not s for s in np.array([False] * 8 + [True])[episodes_to_plot(np.array([False] * 8 + [True]), 4)]) == 3


def test_progress_bars_write_a_few_plain_lines_when_output_is_not_a_terminal():
    import io

    from robo_reward.progress import progress_bar

    log = io.StringIO()
    with progress_bar(total=5000, desc="label", unit="frame", file=log) as bar:
        for _ in range(5000):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and 1 <= len(text.splitlines()) <= 3 and "5000/5000" in text.splitlines()[-1]
