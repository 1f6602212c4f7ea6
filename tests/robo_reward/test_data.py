"""Demo files end to end: writer → reader round trip, append, lazy reads, the clip Dataset in worker
processes, crash safety of ``record`` under SIGKILL, and the ``validate``/``info``/``view``/``record`` CLI.

Files are small and written here; the recorder runs the real simulator (reach, 32 px).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robo_reward import cli
from robo_reward.data import DemoClipDataset, DemoFileError, DemoReader, DemoWriter, Episode, validate
from robo_reward.data.view import STRIP_PX
from robo_reward.video import VIEW_PX, resize_views, tile_views

CAMERAS = ["front", "wrist"]
HEADER = {"task": "reach", "instruction": "move the gripper to the green ball", "fps": 20.0}


def make_episode(rng: np.random.Generator, length: int, cameras=CAMERAS, size=(8, 8), privileged=True, **attrs):
    """An episode with every field filled by distinct random values."""
    height, width = size
    return Episode(
        frames={cam: rng.integers(0, 256, (length, height, width, 3), dtype=np.uint8) for cam in cameras},
        state=rng.normal(size=(length, 5)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(length, 4)).astype(np.float32),
        rewards=rng.normal(size=length).astype(np.float32),
        dones=(np.arange(length) == length - 1).astype(np.uint8),
        success=bool(rng.integers(2)),
        source=f"test:{rng.integers(1000)}",
        privileged={
            "progress": np.linspace(0, 1, length, dtype=np.float32),
            "stage": rng.integers(0, 3, length).astype(np.int32),
        }
        if privileged
        else {},
        attrs=attrs,
    )


def write_demos(path: Path, episodes: list[Episode], cameras=CAMERAS, append=False, **header) -> Path:
    with DemoWriter(path, cameras=list(cameras), append=append, **{**HEADER, **header}) as writer:
        for episode in episodes:
            writer.add(episode)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def temps(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def assert_same_episode(got: Episode, want: Episode) -> None:
    assert sorted(got.frames) == sorted(want.frames)
    for cam in want.frames:
        np.testing.assert_array_equal(got.frames[cam], want.frames[cam])
        assert got.frames[cam].dtype == np.uint8
    for field in ("state", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        assert getattr(got, field).dtype == np.float32
    np.testing.assert_array_equal(got.dones, want.dones)
    assert got.dones.dtype == np.uint8
    assert sorted(got.privileged) == sorted(want.privileged)
    for key, values in want.privileged.items():
        np.testing.assert_array_equal(got.privileged[key], values)
    assert got.privileged.get("progress", np.zeros(0, np.float32)).dtype == np.float32
    assert got.privileged.get("stage", np.zeros(0, np.int32)).dtype == np.int32
    assert got.success is want.success and got.source == want.source


# -- round trip ----------------------------------------------------------------------------------


def test_round_trip_every_field(tmp_path):
    rng = np.random.default_rng(0)
    extra = {"mode": "noisy", "seed": 7, "scale": 0.25, "flag": True, "joint_names": ["j1", "j2"], "ids": [3, 4],
             "note": "grüne Kugel ✓", "empty": ""}  # fmt: skip
    episodes = [make_episode(rng, 6, **extra), make_episode(rng, 9, privileged=False), make_episode(rng, 1)]
    env_args = {"env_name": "reach", "env_kwargs": {"config": {"substeps": 10}}}
    path = write_demos(tmp_path / "demos.h5", episodes, env_args=env_args, stage_names=["approach", "at_target"])

    assert validate(path) == {"episodes": 3, "frames": 16, "cameras": CAMERAS}
    with DemoReader(path) as reader:
        assert (reader.task, reader.instruction, reader.fps) == (HEADER["task"], HEADER["instruction"], 20.0)
        assert reader.cameras == CAMERAS and reader.env_args == env_args
        assert reader.stage_names == ["approach", "at_target"]
        assert reader.names == ["demo_0", "demo_1", "demo_2"] and len(reader) == 3
        for index, want in enumerate(episodes):
            got = reader.episode(index)
            assert_same_episode(got, want)
            assert reader.num_samples(index) == want.num_samples and reader.success(index) is want.success
            for cam in CAMERAS:
                np.testing.assert_array_equal(reader.frames(index, cam, 2, 5), want.frames[cam][2:5])
            np.testing.assert_array_equal(reader.multiview(index), np.stack([want.frames[c] for c in CAMERAS], axis=1))
        first = reader.episode(0).attrs
        assert first["mode"] == "noisy" and first["joint_names"] == ["j1", "j2"] and first["flag"]
        assert first["seed"] == 7 and first["scale"] == 0.25 and list(first["ids"]) == [3, 4]
        assert first["note"] == "grüne Kugel ✓" and first["empty"] == ""
        assert reader.episode(1).attrs == {} and reader.privileged(1, "progress") is None
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert data.attrs["schema_version"] == 1 and data.attrs["total"] == 16
        assert json.loads(data.attrs["cameras"]) == CAMERAS
        assert data["demo_0"].attrs["num_samples"] == 6
        front = data["demo_1/obs/front_rgb"]
        assert front.chunks == (1, 8, 8, 3) and front.compression == "gzip"  # one chunk per frame
        # strings are fixed-length: kept in the checksummed object headers, not in the global heap
        for attrs in (data.attrs, data["demo_0"].attrs):
            for key in attrs:
                string = h5py.check_string_dtype(attrs.get_id(key).dtype)
                assert string is None or string.length is not None, key


def test_episodes_are_numbered_and_sorted_numerically(tmp_path):
    rng = np.random.default_rng(1)
    episodes = [make_episode(rng, 2 + i % 3, cameras=["front"]) for i in range(12)]
    path = write_demos(tmp_path / "demos.h5", episodes, cameras=["front"])
    with DemoReader(path) as reader:
        assert reader.names == [f"demo_{i}" for i in range(12)]  # demo_10 after demo_9, not after demo_1
        for index in (9, 10, 11):
            assert_same_episode(reader.episode(index), episodes[index])


def test_writer_refuses_an_episode_that_would_make_an_invalid_file(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "demos.h5"
    write_demos(path, [make_episode(rng, 4)])
    before = digest(path)
    bad = []
    for change in (
        lambda e: e.actions.__setitem__((1, 0), np.nan),
        lambda e: setattr(e, "state", e.state.astype(np.float64) * 1e39),  # finite in float64, inf in float32
        lambda e: setattr(e, "dones", np.full(4, 2, np.uint8)),
        lambda e: setattr(e, "rewards", e.rewards[:3]),
        lambda e: e.frames.__setitem__("front", e.frames["front"][..., :1]),
        lambda e: e.frames.__setitem__("wrist", np.zeros((4, 16, 16, 3), np.uint8)),  # other size than front
        lambda e: e.frames.pop("wrist"),
        lambda e: e.privileged.__setitem__("progress", np.full(4, 1.5, np.float32)),
        lambda e: e.privileged.__setitem__("stage", np.zeros(3, np.int32)),
    ):
        episode = make_episode(rng, 4)
        change(episode)
        bad.append(episode)
    for episode in bad:
        with pytest.raises(ValueError), DemoWriter(path, cameras=CAMERAS, append=True, **HEADER) as writer:
            writer.add(make_episode(rng, 4))
            writer.add(episode)
        assert digest(path) == before and temps(path) == []  # nothing half-written, nothing left over
    with pytest.raises(ValueError), DemoWriter(path, cameras=CAMERAS, append=True, **HEADER) as writer:
        writer.add(make_episode(rng, 4, size=(16, 16)))  # the file's images are 8 x 8
    assert digest(path) == before and validate(path)["episodes"] == 1


def test_a_failed_add_leaves_no_half_written_episode(tmp_path):
    rng = np.random.default_rng(14)
    path = tmp_path / "demos.h5"
    good = make_episode(rng, 3)
    with DemoWriter(path, cameras=CAMERAS, **HEADER) as writer:
        with pytest.raises(TypeError):
            writer.add(make_episode(rng, 4, note=None))  # h5py cannot store None: fails after the datasets
        assert writer.add(good) == "demo_0"
    assert validate(path) == {"episodes": 1, "frames": 3, "cameras": CAMERAS}
    with DemoReader(path) as reader:
        assert_same_episode(reader.episode(0), good)


def test_an_error_inside_the_writer_leaves_the_destination_as_it_was(tmp_path):
    rng = np.random.default_rng(3)
    path = write_demos(tmp_path / "demos.h5", [make_episode(rng, 3)])
    before = digest(path)
    with pytest.raises(RuntimeError), DemoWriter(path, cameras=CAMERAS, **HEADER) as writer:  # replace mode
        writer.add(make_episode(rng, 5))
        raise RuntimeError("crash while recording")
    assert digest(path) == before and temps(path) == []
    fresh = tmp_path / "new.h5"
    with pytest.raises(RuntimeError), DemoWriter(fresh, cameras=CAMERAS, **HEADER):
        raise RuntimeError("crash before any episode")
    assert not fresh.exists() and temps(fresh) == []


# -- append --------------------------------------------------------------------------------------


def _raw_chunks(path: Path, name: str, key: str) -> list[bytes]:
    with h5py.File(path, "r") as f:
        ds = f[f"data/{name}/{key}"]
        return [ds.id.read_direct_chunk((t, 0, 0, 0))[1] for t in range(ds.shape[0])]


def test_append_adds_episodes_and_leaves_existing_ones_untouched(tmp_path):
    rng = np.random.default_rng(4)
    first = [make_episode(rng, n) for n in (3, 5, 4)]
    path = write_demos(tmp_path / "demos.h5", first)
    with DemoReader(path) as reader:
        before = [reader.episode(i) for i in range(len(reader))]
    chunks_before = _raw_chunks(path, "demo_1", "obs/front_rgb")

    more = [make_episode(rng, n) for n in (2, 6)]
    write_demos(path, more, append=True, task="ignored when appending")
    assert validate(path) == {"episodes": 5, "frames": 20, "cameras": CAMERAS}
    with DemoReader(path) as reader:
        assert reader.names == [f"demo_{i}" for i in range(5)] and reader.task == HEADER["task"]
        for index, want in enumerate(before):
            got = reader.episode(index)
            assert_same_episode(got, want)
            assert got.attrs == want.attrs
        for index, want in enumerate(more, start=3):
            assert_same_episode(reader.episode(index), want)
    assert _raw_chunks(path, "demo_1", "obs/front_rgb") == chunks_before  # copied, never re-encoded
    assert temps(path) == []

    write_demos(path, [make_episode(rng, 2)], append=True)  # numbering continues after a second append
    with DemoReader(path) as reader:
        assert reader.names[-1] == "demo_5"


def test_append_with_other_cameras_is_refused_and_the_file_unchanged(tmp_path):
    rng = np.random.default_rng(5)
    path = write_demos(tmp_path / "demos.h5", [make_episode(rng, 3)])
    before = digest(path)
    for cameras in (["front"], ["wrist", "front"], ["front", "wrist", "side"]):
        with pytest.raises(DemoFileError, match="cannot append") as info:
            DemoWriter(path, cameras=cameras, append=True, **HEADER)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
        assert digest(path) == before and temps(path) == []


def test_append_to_an_invalid_file_is_refused_and_the_file_unchanged(tmp_path):
    path = tmp_path / "demos.h5"
    path.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DemoFileError, match="not a readable HDF5 file"):
        DemoWriter(path, cameras=CAMERAS, append=True, **HEADER)
    assert path.read_bytes() == b"not an hdf5 file" * 100 and temps(path) == []


def test_append_to_a_missing_file_creates_it(tmp_path):
    path = write_demos(tmp_path / "sub" / "demos.h5", [make_episode(np.random.default_rng(6), 3)], append=True)
    assert validate(path)["episodes"] == 1


def test_stale_temp_of_a_dead_writer_is_removed_and_a_live_ones_kept(tmp_path):
    path = tmp_path / "demos[1].h5"  # glob characters in the name must not matter
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = path.with_name(f".{path.name}.{dead.pid}.tmp")
    live = path.with_name(f".{path.name}.{os.getppid()}.tmp")  # our parent is alive
    stale.write_bytes(b"half a file")
    live.write_bytes(b"another writer at work")
    write_demos(path, [make_episode(np.random.default_rng(7), 2)])
    assert not stale.exists() and live.read_bytes() == b"another writer at work"
    assert validate(path)["episodes"] == 1


# -- lazy reads ----------------------------------------------------------------------------------


class CountingFile(io.RawIOBase):
    """A read-only binary file that counts the bytes read through it (unbuffered: no read-ahead)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb", buffering=0)  # closed in close()
        self.name = str(path)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._file.readinto(buffer) or 0
        self.bytes_read += count
        return count

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def test_reading_a_window_reads_only_that_window(tmp_path):
    rng = np.random.default_rng(8)
    long = make_episode(rng, 400, size=(32, 32))  # random pixels: gzip cannot shrink them
    path = write_demos(tmp_path / "demos.h5", [make_episode(rng, 3, size=(32, 32)), long])
    with h5py.File(path, "r") as f:
        stored = f["data/demo_1/obs/front_rgb"].id.get_storage_size()
    assert stored > 400 * 32 * 32 * 3 * 0.9

    counting = CountingFile(path)
    with DemoReader(counting) as reader:
        opened = counting.bytes_read
        window = reader.frames(1, "front", 200, 205)
        window_bytes = counting.bytes_read - opened
        np.testing.assert_array_equal(window, long.frames["front"][200:205])
        assert window_bytes < stored / 20, (window_bytes, stored)  # 5 of 400 frames, plus chunk index
        assert window_bytes >= 5 * 32 * 32 * 3 * 0.9  # it did read the frames themselves
        assert counting.bytes_read < stored / 10  # opening and listing read almost nothing either
        assert reader.summary()["size_bytes"] is None and reader.summary()["episodes"] == 2
    counting.close()


def test_reader_on_a_broken_file_object_raises_demo_file_error():
    with pytest.raises(DemoFileError, match="not a readable HDF5 file"):
        DemoReader(io.BytesIO(b"\x89HDF\r\n\x1a\n" + b"\0" * 100))


# -- clip dataset ---------------------------------------------------------------------------------


def _check_clips(dataset: DemoClipDataset, path: Path, batches) -> int:
    seen = 0
    with DemoReader(path) as reader:
        for batch in batches:
            for k in range(len(batch["episode"])):
                episode, start = int(batch["episode"][k]), int(batch["start"][k])
                stop = start + (dataset.clip_len - 1) * dataset.stride + 1
                want = reader.multiview(episode, start, stop)[:: dataset.stride]
                np.testing.assert_array_equal(batch["frames"][k].numpy(), want)
                steps = np.arange(start, stop, dataset.stride)
                length = reader.num_samples(episode)
                np.testing.assert_allclose(batch["time"][k].numpy(), steps / (length - 1), rtol=1e-6)
                assert bool(batch["success"][k]) is reader.success(episode)
                progress = reader.privileged(episode, "progress")
                np.testing.assert_array_equal(batch["progress"][k].numpy(), progress[steps])
                seen += 1
    return seen


def test_clip_dataset_in_worker_processes_returns_the_readers_clips(tmp_path):
    rng = np.random.default_rng(9)
    episodes = [make_episode(rng, n) for n in (7, 12, 9)]
    for episode in episodes:
        episode.privileged["progress"] = np.sort(rng.uniform(0, 1, episode.num_samples)).astype(np.float32)
    path = write_demos(tmp_path / "demos.h5", episodes)
    dataset = DemoClipDataset(path, clip_len=3, stride=2)
    assert len(dataset) == (7 - 4) + (12 - 4) + (9 - 4)
    first = dataset[0]  # opens the file in this process: the workers must open their own
    assert first["frames"].shape == (3, 2, 8, 8, 3) and first["frames"].dtype == torch.uint8
    assert first["time"].dtype == torch.float32 and first["time"][0] == 0.0
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert _check_clips(dataset, path, loader) == len(dataset)
    last = dataset[len(dataset) - 1]  # the last clip of an episode ends at time 1
    assert last["time"][-1] == 1.0 and last["start"] == 9 - 5


def test_clip_dataset_with_spawned_workers_and_without_progress(tmp_path):
    rng = np.random.default_rng(10)
    path = write_demos(tmp_path / "demos.h5", [make_episode(rng, 6, privileged=False) for _ in range(2)])
    dataset = DemoClipDataset(path, clip_len=2, cameras=["wrist"])
    dataset[0]  # an open h5py file must not be pickled to spawned workers
    loader = DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    assert sum(len(b["episode"]) for b in batches) == len(dataset) == 10
    assert all("progress" not in b for b in batches)
    with DemoReader(path) as reader:
        for batch in batches:
            for k in range(len(batch["episode"])):
                episode, start = int(batch["episode"][k]), int(batch["start"][k])
                want = reader.multiview(episode, start, start + 2, ["wrist"])
                np.testing.assert_array_equal(batch["frames"][k].numpy(), want)
    with pytest.raises(ValueError):
        DemoClipDataset(path, clip_len=0)


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_validate_and_info(tmp_path, capsys):
    rng = np.random.default_rng(11)
    path = write_demos(tmp_path / "demos.h5", [make_episode(rng, 4) for _ in range(3)])
    assert cli.main(["validate", str(path)]) == 0
    assert f"{path}: ok (3 episodes, 12 frames" in capsys.readouterr().out
    assert cli.main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with DemoReader(path) as reader:
        success_rate = np.mean([reader.success(i) for i in range(3)])
    assert summary["episodes"] == 3 and summary["frames"] == 12 and summary["cameras"] == CAMERAS
    assert summary["image_size"] == [8, 8] and summary["fps"] == 20.0 and summary["task"] == "reach"
    assert summary["success_rate"] == pytest.approx(success_rate) and summary["mean_length"] == 4.0
    assert summary["size_bytes"] == path.stat().st_size and summary["labels"] == []

    with h5py.File(path, "r+") as f:
        f["data/demo_2/dones"][1] = 2
    before = digest(path)
    for command in (["validate", str(path)], ["info", str(path), "--json"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"robo-reward {command[0]}: error: {path}: demo_2: dones: values must be 0 or 1"
    assert digest(path) == before
    assert cli.main(["validate", str(tmp_path / "missing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def _mp4_frames(path: Path) -> list[np.ndarray]:
    with imageio.get_reader(path) as reader:
        return [np.asarray(frame) for frame in reader]


def test_cli_view_writes_one_frame_per_step_with_a_progress_strip(tmp_path, capsys):
    rng = np.random.default_rng(12)
    episodes = [make_episode(rng, 5), make_episode(rng, 11), make_episode(rng, 4, privileged=False)]
    path = write_demos(tmp_path / "demos.h5", episodes)
    out = tmp_path / "v.mp4"
    assert cli.main(["view", str(path), "--demo", "1", "--out", str(out)]) == 0
    assert "privileged/progress" in capsys.readouterr().out
    frames = _mp4_frames(out)
    assert len(frames) == 11
    px = VIEW_PX
    assert frames[0].shape == (px + STRIP_PX + 28, 2 * px, 3)  # two 256-px cameras, the strip and its legend
    strip = frames[-1][px : px + STRIP_PX].astype(int)  # the whole progress curve is drawn by the last frame
    assert strip.max() > 150 and strip.mean() < 100  # a light curve on a dark background
    top = frames[-1][px // 4 : px].astype(int)  # below the label in the corner
    last = np.stack([episodes[1].frames[c][-1] for c in CAMERAS])[None]
    want = tile_views(resize_views(last))[px // 4 :].astype(int)
    assert np.abs(top - want).mean() < np.abs(top - want[::-1]).mean()  # the episode's own last frame

    plain = tmp_path / "plain.mp4"
    assert cli.main(["view", str(path), "--demo", "2", "--out", str(plain)]) == 0
    frames = _mp4_frames(plain)
    assert len(frames) == 4 and frames[0].shape == (px, 2 * px, 3)  # no progress: no strip

    capsys.readouterr()
    assert cli.main(["view", str(path), "--demo", "3", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "no episode 3; the file has 3 (0..2)" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_view_of_a_damaged_episode_is_one_line_and_writes_nothing(tmp_path, capsys):
    rng = np.random.default_rng(15)
    path = write_demos(tmp_path / "demos.h5", [make_episode(rng, 4), make_episode(rng, 6)])
    with h5py.File(path, "r") as f:
        offset = f["data/demo_1/obs/front_rgb"].id.get_chunk_info(2).byte_offset
    with open(path, "r+b") as handle:  # zero the middle of one compressed frame
        handle.seek(offset + 8)
        handle.write(bytes(32))
    out = tmp_path / "v.mp4"
    assert cli.main(["view", str(path), "--demo", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"robo-reward view: error: {path}: demo_1: unreadable content") and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.glob("*.mp4")) == []
    assert cli.main(["view", str(path), "--demo", "0", "--out", str(out)]) == 0  # the other episode is fine


def test_cli_record_with_failures_labels_success_honestly(tmp_path, capsys):
    path = tmp_path / "demos.h5"
    argv = ["record", "--task", "reach", "--num-demos", "24", "--num-envs", "8", "--out", str(path)]
    assert cli.main([*argv, "--cameras", "front", "--res", "16", "--failure-rate", "1.0", "--seed", "3"]) == 0
    assert "wrote 24 episodes" in capsys.readouterr().out
    assert validate(path)["episodes"] == 24
    modes = {}
    with DemoReader(path) as reader:
        assert reader.cameras == ["front"] and reader.env_args["failure_rate"] == 1.0
        success_weight = reader.env_args["env_kwargs"]["config"]["reward"]["success"]
        for index in range(len(reader)):
            episode = reader.episode(index)
            mode = episode.attrs["mode"]
            modes[mode] = modes.get(mode, 0) + 1
            assert mode in ("noisy", "early_stop") and episode.source == f"sim:reach:{mode}"
            # reach: the success term is in the reward only at the step that succeeds, which ends the episode
            reached = episode.rewards > success_weight / 2
            assert episode.success == bool(reached[-1]) and not reached[:-1].any()
            assert episode.dones[-1] == 1 and not episode.dones[:-1].any()
            if mode == "early_stop":
                assert episode.success is False
                assert episode.num_samples < 100
    assert modes.get("noisy", 0) > 0 and modes.get("early_stop", 0) > 0, modes


def test_cli_record_stop_after_success_ends_each_episode_that_many_frames_after_success(tmp_path, capsys):
    # push_cube is judged at its last step, so by default an episode runs its 100 steps, the cube still at the
    # goal for the last half; with --stop-after-success N it ends N frames after its first success frame
    # (push_cube's last stage, at_goal, is its success). One demo per env: each is its env's first episode,
    # the same with and without the option, so the short ones must be prefixes of the full ones.
    common = ["record", "--task", "push_cube", "--num-demos", "6", "--num-envs", "6", "--cameras", "front",
              "--res", "16", "--seed", "2"]  # fmt: skip
    full, short = tmp_path / "full.h5", tmp_path / "short.h5"
    assert cli.main([*common, "--out", str(full)]) == 0
    assert cli.main([*common, "--out", str(short), "--stop-after-success", "4"]) == 0
    capsys.readouterr()
    with DemoReader(full) as reader:
        assert reader.env_args["stop_after_success"] is None
        full_eps = [reader.episode(index) for index in range(len(reader))]
    with DemoReader(short) as reader:
        assert reader.env_args["stop_after_success"] == 4
        last_stage = len(reader.stage_names) - 1
        short_eps = [reader.episode(index) for index in range(len(reader))]
    assert validate(short)["episodes"] == 6
    assert all(ep.num_samples == 100 for ep in full_eps)
    succeeded = [ep for ep in short_eps if ep.success]
    assert len(succeeded) >= 4  # the expert succeeds in nearly every push
    for ep in succeeded:
        stage = ep.privileged["stage"]
        first = int(np.argmax(stage == last_stage))
        assert stage[first] == last_stage and ep.num_samples == first + 4 + 1 < 100
        assert stage[-1] == last_stage and ep.dones[-1] == 1 and not ep.dones[:-1].any()
        twin = [f for f in full_eps if np.array_equal(f.state[0], ep.state[0])]
        assert len(twin) == 1, "each short episode starts like exactly one full one"
        np.testing.assert_array_equal(twin[0].frames["front"][: ep.num_samples], ep.frames["front"])
        np.testing.assert_array_equal(twin[0].actions[: ep.num_samples], ep.actions)
        assert twin[0].success  # the full episode, judged at its 100th step, kept the cube at the goal
    for ep in short_eps:
        if not ep.success:  # never reached the goal: it ran to the time limit as before
            assert ep.num_samples == 100


# -- crash safety: SIGKILL during record ------------------------------------------------------------


def _record_cmd(out: Path, num_demos: int = 64) -> list[str]:
    return [sys.executable, "-m", "robo_reward.cli", "record", "--task", "reach", "--num-demos", str(num_demos),
            "--num-envs", "8", "--out", str(out), "--cameras", "front", "--res", "32"]  # fmt: skip


def _start(out: Path, num_demos: int = 64) -> subprocess.Popen:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen(_record_cmd(out, num_demos), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)  # reaped: a zombie would still count as a live writer
    proc.stderr.close()


def _wait_for_temp(out: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """The temp file of ``proc``'s writer, once it exists."""
    tmp = out.with_name(f".{out.name}.{proc.pid}.tmp")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tmp.exists():
            return tmp
        assert proc.poll() is None, f"record ended (rc={proc.returncode}) before writing"
        time.sleep(0.02)
    raise AssertionError("no temp file appeared")


def test_killed_record_keeps_the_old_file_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "X.h5"
    old = write_demos(out, [make_episode(np.random.default_rng(13), 3, cameras=["front"])], cameras=["front"])
    before = digest(old)
    proc = _start(out, num_demos=16)
    tmp = _wait_for_temp(out, proc)
    time.sleep(random.uniform(0.0, 0.5))
    _kill(proc)
    assert digest(out) == before and validate(out)["episodes"] == 1  # still the old, valid file
    assert tmp.exists()  # killed mid-write: its temp is left behind

    done = subprocess.run(_record_cmd(out, num_demos=8), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert validate(out)["episodes"] == 8 and temps(out) == []  # replaced, and the stale temp removed


@pytest.mark.slow
def test_record_killed_at_random_points_never_leaves_a_damaged_file(tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    out = tmp_path / "X.h5"
    for run in range(5):
        proc = _start(out)
        delay = rng.uniform(1.0, 6.0)
        time.sleep(delay)
        _kill(proc)
        assert not out.exists() or validate(out), f"seed {seed}, run {run}, killed after {delay:.2f} s"

    proc = _start(out)  # killed once the last episode is written: while closing, renaming or just after
    progress = b""
    while b"64/64" not in progress and proc.poll() is None:
        progress += proc.stderr.read1(4096)
    _kill(proc)
    assert not out.exists() or validate(out)["episodes"] == 64, f"seed {seed}"

    done = subprocess.run(_record_cmd(out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert validate(out)["episodes"] == 64 and temps(out) == [], f"seed {seed}"

    before = digest(out)  # a valid file exists: a killed record must leave it byte-identical
    for _ in range(2):
        proc = _start(out)
        _wait_for_temp(out, proc)
        time.sleep(rng.uniform(0.0, 2.0))
        _kill(proc)
        assert digest(out) == before, f"seed {seed}"
    assert validate(out)["episodes"] == 64
