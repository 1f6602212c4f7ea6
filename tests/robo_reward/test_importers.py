"""Importers on real files written here: H.264 mp4s, ROS 1 / ROS 2 (sqlite3, mcap) bags, a LeRobot v3 folder.

Frames are checked by identity, not only by closeness: every written frame differs from its neighbours (the
background brightens step by step and a square moves), so an imported frame must be nearest to the one it
should be — an off-by-one in synchronisation or in an episode's segment of a shared mp4 fails.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robo_reward import cli
from robo_reward.data import DemoReader, validate


def _frames(count: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """uint8 (count, H, W, 3): background brightening per frame plus a moving coloured square."""
    height, width = size
    frames = np.zeros((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t] = (20 + 40 * seed, (10 + 11 * t) % 240, 200 - 7 * t % 180)
        x = (5 * t + 9 * seed) % (width - 16)
        frames[t, 8:24, x : x + 16] = (230, 40, 40)
    return frames


def _write_mp4(path: Path, frames: np.ndarray, fps: float = 10) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, codec="libx264", quality=9, macro_block_size=16)
    return path


def _check_frames(got: np.ndarray, written: np.ndarray, expected_index) -> None:
    """Each imported frame is within H.264 noise of its written frame, and nearer to it than to any other."""
    errors = np.abs(got[:, None].astype(np.int16) - written[None].astype(np.int16)).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(errors.argmin(axis=1), expected_index)
    assert errors[np.arange(len(got)), expected_index].max() < 10


def _run(kind: str, argv: list[str]) -> dict:
    """Run an importer in-process to get its summary dict."""
    import importlib

    args = cli.build_parser().parse_args(["import", kind, *argv])
    return importlib.import_module(f"robo_reward.data.importers.{kind}").run(args)


def _fails(capsys, argv: list[str], names: Path, out: Path, before: bytes | None = None) -> str:
    """The CLI exits 2 with one stderr line naming ``names``; ``out`` is absent or unchanged."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(names) in err, err
    assert out.read_bytes() == before if before is not None else not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*.tmp"))
    return err


# ---------------------------------------------------------------------------------------------- video


def test_video_folders_trim_cameras_and_validate(tmp_path):
    front_a, wrist_a = _frames(12), _frames(10, seed=1)
    front_b, wrist_b = _frames(8, seed=2), _frames(8, seed=3)
    _write_mp4(tmp_path / "ep_a" / "front.mp4", front_a)
    _write_mp4(tmp_path / "ep_a" / "wrist.mp4", wrist_a)
    _write_mp4(tmp_path / "ep_b" / "front.mp4", front_b)
    _write_mp4(tmp_path / "ep_b" / "wrist.mp4", wrist_b)
    out = tmp_path / "demos.h5"
    summary = _run(
        "video", [str(tmp_path / "ep_a"), str(tmp_path / "ep_b"), "--out", str(out), "--instruction", "push the cube"]
    )
    assert summary["episodes"] == 2 and summary["file"] == str(out)
    assert summary["frames"] == 18 and summary["image_size"] == [64, 64]
    assert any("ep_a" in note and "trimmed to 10" in note for note in summary["notes"])
    assert validate(out)["episodes"] == 2
    with DemoReader(out) as reader:
        assert reader.cameras == ["front", "wrist"] and reader.fps == 10 and reader.instruction == "push the cube"
        first = reader.episode(0)
        assert first.state.shape == (10, 0) and first.actions.shape == (10, 0) and first.state.dtype == np.float32
        assert first.rewards.tolist() == [0.0] * 10 and first.dones.tolist() == [0] * 9 + [1]
        assert first.success and first.source == f"video:{tmp_path / 'ep_a'}"
        _check_frames(first.frames["front"], front_a, np.arange(10))
        _check_frames(first.frames["wrist"], wrist_a, np.arange(10))
        _check_frames(reader.frames(1, "wrist"), wrist_b, np.arange(8))


def test_video_single_file_resample_resize_append(tmp_path):
    from PIL import Image

    written = _frames(12)
    video = _write_mp4(tmp_path / "clip.mp4", written)
    out = tmp_path / "demos.h5"
    common = ["--camera", "top", "--res", "32", "--fps", "5", "--instruction", "open it", "--out", str(out)]
    summary = _run("video", [str(video), *common, "--failure"])
    assert summary["episodes"] == 1 and summary["fps"] == 5 and summary["image_size"] == [32, 32]
    _run("video", [str(video), *common, "--append"])
    validate(out)
    small = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.Resampling.BILINEAR)) for f in written])
    with DemoReader(out) as reader:
        assert len(reader) == 2 and reader.cameras == ["top"] and reader.fps == 5
        assert [reader.success(i) for i in range(2)] == [False, True]
        _check_frames(reader.frames(0, "top"), small, np.arange(0, 12, 2))  # 10 fps → 5 fps: every second


def test_video_bad_inputs_fail_cleanly(tmp_path, capsys):
    _write_mp4(tmp_path / "ep_a" / "front.mp4", _frames(6))
    _write_mp4(tmp_path / "ep_a" / "wrist.mp4", _frames(6, seed=1))
    _write_mp4(tmp_path / "ep_c" / "front.mp4", _frames(6))
    _write_mp4(tmp_path / "big" / "front.mp4", _frames(6, size=(48, 48)))
    _write_mp4(tmp_path / "big" / "wrist.mp4", _frames(6, size=(48, 48)))
    out = tmp_path / "out.h5"
    base = ["import", "video", "--instruction", "x", "--out", str(out)]
    _fails(capsys, [*base, str(tmp_path / "ep_a"), str(tmp_path / "ep_c")], tmp_path / "ep_c", out)
    _fails(capsys, [*base, str(tmp_path / "missing.mp4")], tmp_path / "missing.mp4", out)
    err = _fails(capsys, [*base, str(tmp_path / "ep_a"), str(tmp_path / "big")], tmp_path / "big", out)
    assert "--res" in err

    assert cli.main([*base, str(tmp_path / "ep_a")]) == 0  # now a good file exists: failures must not touch it
    before = out.read_bytes()
    good = (tmp_path / "ep_a" / "front.mp4").read_bytes()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good[: len(good) // 2])
    _fails(capsys, [*base, str(corrupt), "--camera", "front"], corrupt, out, before)
    _fails(capsys, [*base, "--append", str(tmp_path / "ep_c")], out, out, before)  # camera set differs from file's


# ---------------------------------------------------------------------------------------------- rosbag

BASE_NS = 1_700_000_000 * 10**9
MS = 10**6
IMAGE_MS, COMPRESSED_MS, JOINT_MS = (20, 70), (100, 200), (0, 20)  # (first message, period)
HEIGHT, WIDTH = 24, 40


def _bag_image(i: int) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = (8 * i) % 256
    image[..., 1] = np.linspace(0, 255, WIDTH, dtype=np.uint8)[None]  # a gradient catches flips/strides
    image[..., 2] = 200 - 5 * i
    return image


def _jpeg_image(j: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), (25 * j, 120, 240 - 20 * j), np.uint8)


def _joint(k: int) -> tuple[list[float], list[float]]:
    return [0.01 * k, -0.02 * k], [0.5 * k, 1.0]


def _write_bag(path: Path, kind: str, encoding: str = "bgr8", joints_until_ms: int = 2000) -> Path:
    """Raw Image (bgr8, padded rows) every 70 ms, jpeg CompressedImage every 200 ms, JointState every 20 ms."""
    from PIL import Image
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as Writer2
    from rosbags.typesys import Stores, get_typestore

    ros1 = kind == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    types, serialize = store.types, store.serialize_ros1 if ros1 else store.serialize_cdr

    def header(ns: int):
        stamp = types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id="cam", **({"seq": 0} if ros1 else {}))

    messages = []
    for i, ms in enumerate(range(IMAGE_MS[0], 1981, IMAGE_MS[1])):
        pixels = _bag_image(i)[..., ::-1] if encoding == "bgr8" else _bag_image(i)
        rows = np.zeros((HEIGHT, WIDTH * 3 + 8), np.uint8)  # step > width * 3: padded rows
        rows[:, : WIDTH * 3] = pixels.reshape(HEIGHT, -1)
        msg = types["sensor_msgs/msg/Image"](
            header=header(BASE_NS + ms * MS),
            height=HEIGHT,
            width=WIDTH,
            encoding=encoding,
            is_bigendian=0,
            step=WIDTH * 3 + 8,
            data=rows.ravel(),
        )
        messages.append((ms, "/cam/image", msg))
    for j, ms in enumerate(range(COMPRESSED_MS[0], 1901, COMPRESSED_MS[1])):
        buffer = io.BytesIO()
        Image.fromarray(_jpeg_image(j)).save(buffer, format="JPEG", quality=95)
        data = np.frombuffer(buffer.getvalue(), np.uint8)
        msg = types["sensor_msgs/msg/CompressedImage"](header=header(BASE_NS + ms * MS), format="jpeg", data=data)
        messages.append((ms, "/cam/compressed", msg))
    for k, ms in enumerate(range(JOINT_MS[0], joints_until_ms + 1, JOINT_MS[1])):
        position, velocity = _joint(k)
        msg = types["sensor_msgs/msg/JointState"](
            header=header(BASE_NS + ms * MS),
            name=["j1", "j2"],
            position=np.array(position),
            velocity=np.array(velocity),
            effort=np.zeros(0),
        )
        messages.append((ms, "/joint_states", msg))

    if ros1:
        writer = Writer1(path)
    else:
        plugin = StoragePlugin.MCAP if kind == "mcap" else StoragePlugin.SQLITE3
        writer = Writer2(path, version=9, storage_plugin=plugin)
    with writer:
        msgtypes = {topic: type(msg).__msgtype__ for _, topic, msg in messages}
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=store) for topic, msgtype in msgtypes.items()
        }
        for ms, topic, msg in sorted(messages, key=lambda m: m[0]):
            writer.write(connections[topic], BASE_NS + ms * MS, serialize(msg, type(msg).__msgtype__))
    return path


def _bag_path(tmp_path: Path, kind: str) -> Path:
    return tmp_path / ("demo.bag" if kind == "ros1" else f"demo_{kind}")


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
def test_rosbag_sample_and_hold(tmp_path, kind):
    bag = _write_bag(_bag_path(tmp_path, kind), kind)
    out = tmp_path / "demos.h5"
    summary = _run(
        "rosbag",
        [
            str(bag),
            "--camera",
            "front=/cam/image",
            "--camera",
            "hand=/cam/compressed",
            "--out",
            str(out),
            "--instruction",
            "stack",
        ],
    )
    # ticks at 10 Hz from the latest first message (100 ms) to the earliest last one (1900 ms)
    ticks = np.arange(100, 1901, 100)
    assert summary["episodes"] == 1 and summary["frames"] == len(ticks) == 19
    validate(out)
    held = {
        name: (ticks - first) // period
        for name, (first, period) in {"image": IMAGE_MS, "jpeg": COMPRESSED_MS, "joint": JOINT_MS}.items()
    }
    with DemoReader(out) as reader:
        assert reader.cameras == ["front", "hand"] and reader.fps == 10
        episode = reader.episode(0)
    positions = np.array([_joint(k)[0] for k in held["joint"]], np.float32)
    velocities = np.array([_joint(k)[1] for k in held["joint"]], np.float32)
    np.testing.assert_allclose(episode.state, np.concatenate([positions, velocities], axis=1), rtol=1e-6)
    np.testing.assert_allclose(episode.actions[:-1], positions[1:])  # absolute targets: the next positions
    np.testing.assert_allclose(episode.actions[-1], positions[-1])
    assert json.loads(episode.attrs["joint_names"]) == ["j1", "j2"] and episode.source == f"rosbag:{bag}"
    np.testing.assert_array_equal(episode.frames["front"], np.stack([_bag_image(i) for i in held["image"]]))
    _check_frames(episode.frames["hand"], np.stack([_jpeg_image(j) for j in range(10)]), held["jpeg"])
    assert episode.dones.tolist() == [0] * 18 + [1] and not episode.rewards.any()


def test_rosbag_default_cameras_and_resize(tmp_path):
    bag = _write_bag(tmp_path / "demo.bag", "ros1", encoding="rgb8")
    out = tmp_path / "demos.h5"
    summary = _run("rosbag", [str(bag), "--out", str(out), "--res", "16", "--fps", "5", "--joint-topic", ""])
    assert summary["cameras"] == ["cam_compressed", "cam_image"] and summary["image_size"] == [16, 16]
    assert summary["frames"] == 10  # 100..1900 ms at 5 Hz
    validate(out)
    with DemoReader(out) as reader:
        assert reader.episode(0).state.shape == (10, 0)


def test_rosbag_bad_inputs_fail_cleanly(tmp_path, capsys):
    bag = _write_bag(tmp_path / "demo.bag", "ros1")
    odd = _write_bag(tmp_path / "odd.bag", "ros1", encoding="16UC1")
    early = _write_bag(tmp_path / "early.bag", "ros1", joints_until_ms=60)
    out = tmp_path / "out.h5"
    base = ["import", "rosbag", "--out", str(out)]
    err = _fails(capsys, [*base, str(bag), "--camera", "x=/nope"], bag, out)
    assert "/nope" in err and "/cam/image" in err and "/joint_states" in err  # lists the bag's topics
    err = _fails(capsys, [*base, str(odd), "--camera", "x=/cam/image"], odd, out)
    assert "16UC1" in err
    err = _fails(capsys, [*base, str(early)], early, out)
    assert "overlap" in err
    _fails(capsys, [*base, str(tmp_path / "missing.bag")], tmp_path / "missing.bag", out)
    assert cli.main([*base, str(bag)]) == 0
    before = out.read_bytes()
    _fails(capsys, [*base, str(bag), str(odd)], odd, out, before)  # the second bag fails: nothing is written


# ---------------------------------------------------------------------------------------------- lerobot

LENGTHS = (12, 8)
VIDEO_KEY = "observation.images.front"


def _write_lerobot(root: Path, fps: int = 10) -> np.ndarray:
    """A two-episode LeRobot v3 folder; both episodes share one mp4 back to back. Returns the written frames."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = _frames(sum(LENGTHS))
    _write_mp4(root / "videos" / VIDEO_KEY / "chunk-000" / "file-000.mp4", frames, fps)
    floats = pa.list_(pa.float32())
    rows, episodes, start = [], [], 0
    for episode, length in enumerate(LENGTHS):
        for f in range(length):
            g = start + f
            rows.append(
                {
                    "observation.state": [g, 0.5 * g, -g],
                    "action": [g + 100.0, g + 0.25, 0.0],
                    "timestamp": f / fps,
                    "frame_index": f,
                    "episode_index": episode,
                    "index": g,
                    "task_index": episode,
                    "next.reward": float(f == length - 1),
                    "next.done": f == length - 1,
                }
            )
        episodes.append(
            {
                "episode_index": episode,
                "tasks": [["push the cube", "lift the cube"][episode]],
                "length": length,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": start,
                "dataset_to_index": start + length,
                f"videos/{VIDEO_KEY}/chunk_index": 0,
                f"videos/{VIDEO_KEY}/file_index": 0,
                f"videos/{VIDEO_KEY}/from_timestamp": start / fps,
                f"videos/{VIDEO_KEY}/to_timestamp": (start + length) / fps,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "stats/action/mean": [1.0, 2.0, 3.0],
            }
        )
        start += length
    schema = {"observation.state": floats, "action": floats, "timestamp": pa.float32()}
    table = pa.table({key: pa.array([row[key] for row in rows], schema.get(key)) for key in rows[0]})
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(
        pa.table({"task_index": [0, 1], "task": ["push the cube", "lift the cube"]}), root / "meta" / "tasks.parquet"
    )
    vector = {"dtype": "float32", "shape": [3], "names": None}
    features = {
        "observation.state": vector,
        "action": vector,
        VIDEO_KEY: {"dtype": "video", "shape": [64, 64, 3], "names": ["height", "width", "channels"]},
        "timestamp": {"dtype": "float32", "shape": [1]},
        "next.reward": {"dtype": "float32", "shape": [1]},
    }
    info = {
        "codebase_version": "v3.0",
        "fps": fps,
        "features": features,
        "total_episodes": len(LENGTHS),
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return frames


def test_lerobot_episode_split(tmp_path):
    root = tmp_path / "dataset"
    written = _write_lerobot(root)
    out = tmp_path / "demos.h5"
    summary = _run("lerobot", [str(root), "--out", str(out)])
    assert summary["episodes"] == 2 and summary["frames"] == 20 and summary["cameras"] == ["front"]
    validate(out)
    with DemoReader(out) as reader:
        assert reader.instruction == "push the cube" and reader.fps == 10
        for index, (start, length) in enumerate([(0, 12), (12, 8)]):
            episode = reader.episode(index)
            g = np.arange(start, start + length, dtype=np.float32)
            np.testing.assert_allclose(episode.state, np.stack([g, 0.5 * g, -g], axis=1))
            np.testing.assert_allclose(episode.actions, np.stack([g + 100, g + 0.25, 0 * g], axis=1))
            assert episode.rewards.tolist() == [0.0] * (length - 1) + [1.0]
            assert episode.dones.tolist() == [0] * (length - 1) + [1]
            assert episode.attrs["instruction"] == ["push the cube", "lift the cube"][index]
            _check_frames(episode.frames["front"], written, np.arange(start, start + length))

    subset = tmp_path / "subset.h5"
    _run("lerobot", [str(root), "--out", str(subset), "--episodes", "1", "--instruction", "lift", "--res", "32"])
    with DemoReader(subset) as reader:
        assert len(reader) == 1 and reader.instruction == "lift" and reader.num_samples(0) == 8
        assert reader.frames(0, "front").shape == (8, 32, 32, 3)
        assert reader.episode(0).state[0, 0] == 12


def test_lerobot_bad_inputs_fail_cleanly(tmp_path, capsys):
    root = tmp_path / "dataset"
    _write_lerobot(root)
    out = tmp_path / "out.h5"
    _fails(capsys, ["import", "lerobot", str(root), "--episodes", "5", "--out", str(out)], root, out)
    _fails(capsys, ["import", "lerobot", str(tmp_path / "nope"), "--out", str(out)], tmp_path / "nope", out)
    video = root / "videos" / VIDEO_KEY / "chunk-000" / "file-000.mp4"
    video.write_bytes(video.read_bytes()[:2000])
    _fails(capsys, ["import", "lerobot", str(root), "--out", str(out)], video, out)


def test_importers_import_cheaply():
    """Building the CLI parser imports every importer: the heavy readers must wait until an import runs."""
    code = (
        "import sys; from robo_reward import cli; cli.build_parser(); "
        "print(sorted(m for m in ('rosbags', 'pyarrow', 'av', 'PIL') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
