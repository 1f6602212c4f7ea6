"""The main job end to end, small: expert video, demos, PRM, PPO with PBRS(distilled PRM), export, rollout."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from robo_reward.cli import main
from robo_reward.data.reader import DemoReader
from robo_reward.video import tile_views, write_mp4


def test_pipeline_writes_video_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "pipeline",
            "task=reach",
            "num_envs=4",
            "episodes=4",
            "video_envs=2",
            f"out={out}",
            "bench.num_envs=4",
            "bench.steps=10",
            "bench.rounds=1",
            "reward.num_demos=6",
            "reward.heldout_demos=4",
            "reward.steps=20",
            "policy.num_envs=8",
            "policy.iterations=2",
            "policy.video_steps=5",
            "policy.rollout_episodes=4",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])  # the last line is summary.json
    assert summary == json.loads((out / "summary.json").read_text())
    assert set(summary) == {"success_rate", "voc", "wall_s", "artifact"}
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["wall_s"] > 0
    assert (out / "artifact" / "policy.onnx").exists() and (out / "artifact" / "spec.json").exists()
    spec = json.loads((out / "artifact" / "spec.json").read_text())
    assert spec["task"] == "reach" and len(spec["observation"]["names"]) == spec["observation"]["dim"]
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "reach" and report["episodes"] >= 4
    assert report["expert_success_rate"] >= 0.75
    assert report["bench_sim"]["num_envs"] == 4
    policy = report["policy"]
    assert policy["rollout"]["episodes"] == 4 and policy["train"]["env_steps"] == 2 * 24 * 8
    assert (out / "policy" / "learning_curve.png").exists() and (out / "policy" / "eval.mp4").exists()
    video = iio.imread(out / "reach_expert.mp4")
    assert video.shape[1:] == (2 * 256, 3 * 256, 3)  # 2 envs as rows, 3 cameras as columns, 256 px each
    assert len(video) >= report["mean_episode_length"]
    assert {"voc", "success_auc", "progress_mae"} <= set(report["prm"])
    assert (out / "prm" / "weights.safetensors").exists() and (out / "prm_curves.png").exists()
    assert len(iio.imread(out / "heldout_demo0_labelled.mp4")) > 0
    with DemoReader(out / "demos_heldout.h5") as reader:
        assert reader.label_models() == ["prm"] and len(reader) == 4
        assert reader.env_args["stop_after_success"] == 10  # evaluation demos end like a stopped recording


def test_tile_views_layout():
    frames = np.zeros((2, 3, 4, 5, 3), dtype=np.uint8)
    frames[1, 2] = 255
    tiled = tile_views(frames)
    assert tiled.shape == (8, 15, 3)
    assert (tiled[4:, 10:] == 255).all() and (tiled[:4] == 0).all() and (tiled[4:, :10] == 0).all()


def test_write_mp4_is_atomic_on_failure(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous good file")
    bad_frames = [np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((9, 9, 3), dtype=np.uint8)]
    with pytest.raises(ValueError, match="one size"):
        write_mp4(target, bad_frames, fps=10)
    assert target.read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_write_mp4_failing_mid_stream_leaves_old_file(tmp_path, monkeypatch):
    import imageio_ffmpeg

    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous good file")
    real = imageio_ffmpeg.write_frames
    sent = []

    def failing_writer(*args, **kwargs):
        gen = real(*args, **kwargs)

        def wrapped():
            frame = yield
            gen.send(None)
            while True:
                if len(sent) == 3:
                    gen.close()
                    raise OSError("disk full")
                gen.send(frame)
                sent.append(1)
                frame = yield

        w = wrapped()
        return w

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", failing_writer)
    frames = [np.full((16, 16, 3), i * 20, dtype=np.uint8) for i in range(8)]
    with pytest.raises(OSError, match="disk full"):
        write_mp4(target, frames, fps=10)
    assert len(sent) == 3
    assert target.read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
