"""The labeller's read path, lanes and journal: frames decoded from the chunk tables are exactly h5py's,
also from several threads at once, bad files fail with one line naming the episode (from a forked lane
too), labels do not depend on the number of lanes, a torn journal resumes to the labels of an
uninterrupted run without re-running finished episodes, and ``bench label`` prints its JSON."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from robo_reward.cli import main as cli
from robo_reward.data import DemoFileError, DemoReader, DemoWriter, Episode
from robo_reward.data.inflate import FrameReader
from robo_reward.label import _RECORD, _chunks, label, sidecar
from robo_reward.models import load
from robo_reward.models.prm import PRMConfig, ProgressRewardModel

CAMERAS = ["front", "wrist"]
INSTRUCTION = "push the cube to the goal"
LENGTHS = [37, 5, 64, 1, 50, 23]


def _episode(rng: np.random.Generator, length: int) -> Episode:
    """Smooth images (they compress, as renders do) with a random pattern per frame."""
    base = np.linspace(0, 255, 32, dtype=np.float32)[None, :, None, None]
    frames = {}
    for cam in CAMERAS:
        noise = rng.integers(0, 40, (length, 32, 32, 3))
        frames[cam] = (base + noise + rng.integers(0, 60, (length, 1, 1, 3))).clip(0, 255).astype(np.uint8)
    return Episode(frames=frames, state=np.zeros((length, 2), np.float32), actions=np.zeros((length, 2), np.float32),
                   rewards=np.zeros(length, np.float32), dones=(np.arange(length) == length - 1).astype(np.uint8),
                   success=True, source="test")  # fmt: skip


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("label") / "demos.h5"
    rng = np.random.default_rng(0)
    with DemoWriter(path, cameras=CAMERAS, task="push_cube", instruction=INSTRUCTION, fps=20.0) as writer:
        for length in LENGTHS:
            writer.add(_episode(rng, length))
    return path


@pytest.fixture(scope="module")
def model() -> ProgressRewardModel:
    torch.manual_seed(0)
    return ProgressRewardModel(PRMConfig(cameras=CAMERAS, instructions=[INSTRUCTION], image_size=32)).eval()


def _segments(names: list[str], batch: int) -> list[list[tuple[str, int, int]]]:
    return [[(names[ep], s, e) for ep, s, e in chunk] for chunk in _chunks(LENGTHS, batch)]


def _expected(demo_file: Path) -> np.ndarray:
    with DemoReader(demo_file) as reader:
        return np.concatenate([reader.multiview(i, cameras=CAMERAS) for i in range(len(reader))])


def test_decoded_batches_are_exactly_what_h5py_reads(demo_file):
    with DemoReader(demo_file) as reader:
        names = list(reader.names)
    buffer = np.empty((40, 2, 32, 32, 3), np.uint8)
    with FrameReader(demo_file, CAMERAS, (32, 32, 3)) as frames:
        got = [frames.read(chunk, buffer).copy() for chunk in _segments(names, 40)]
    assert np.array_equal(np.concatenate(got), _expected(demo_file))


def test_threads_share_one_reader(demo_file):
    with DemoReader(demo_file) as reader:
        names = list(reader.names)
    chunks = _segments(names, 16)
    with FrameReader(demo_file, CAMERAS, (32, 32, 3)) as frames, ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda chunk: frames.read(chunk, np.empty((16, 2, 32, 32, 3), np.uint8)).copy(), chunks))
    assert np.array_equal(np.concatenate(got), _expected(demo_file))


def test_other_layouts_go_through_h5py(demo_file, tmp_path):
    plain = tmp_path / "plain.h5"
    shutil.copyfile(demo_file, plain)
    with h5py.File(plain, "a") as f:
        frames = f["data/demo_0/obs/wrist_rgb"][()]
        del f["data/demo_0/obs/wrist_rgb"]
        f.create_dataset("data/demo_0/obs/wrist_rgb", data=frames, chunks=(4, 32, 32, 3), compression="lzf")
    with FrameReader(plain, ["wrist"], (32, 32, 3)) as reader:
        got = reader.read([("demo_0", 3, 30)], np.empty((64, 1, 32, 32, 3), np.uint8))
    assert np.array_equal(got[:, 0], frames[3:30])


def test_damaged_episodes_fail_with_one_line_naming_them(demo_file, model, tmp_path):
    broken = tmp_path / "broken.h5"
    shutil.copyfile(demo_file, broken)
    with h5py.File(broken, "a") as f:
        del f["data/demo_2/obs/front_rgb"]
        offset = f["data/demo_4/obs/wrist_rgb"].id.get_chunk_info(7).byte_offset
    with open(broken, "r+b") as handle:  # garble one frame's compressed bytes in place
        handle.seek(offset + 4)
        handle.write(b"\xff" * 16)
    buffer = np.empty((64, 2, 32, 32, 3), np.uint8)
    with FrameReader(broken, CAMERAS, (32, 32, 3)) as frames:
        with pytest.raises(DemoFileError) as missing:
            frames.read([("demo_2", 0, 10)], buffer)
        with pytest.raises(DemoFileError) as corrupt:
            frames.read([("demo_4", 0, 20)], buffer)
        with pytest.raises(DemoFileError) as short:
            frames.read([("demo_1", 0, 6)], buffer)
        assert frames.read([("demo_1", 0, 5)], buffer).shape == (5, 2, 32, 32, 3)  # the reader survives errors
    for error, demo, key in ((missing, "demo_2", "obs/front_rgb"), (corrupt, "demo_4", "obs/wrist_rgb"),
                             (short, "demo_1", "obs/front_rgb")):  # fmt: skip
        message = str(error.value)
        assert len(message.splitlines()) == 1 and str(broken) in message and demo in message and key in message
    assert "frame 7" in str(corrupt.value)

    for lanes in (1, 2):  # raised in this process or in a forked lane, the error reads the same
        target = tmp_path / f"broken-{lanes}.h5"
        shutil.copyfile(broken, target)
        with pytest.raises(DemoFileError) as labelling:
            label(target, model, "prm", batch=8, progress_bar=False, lanes=lanes)
        assert "demo_2: obs/front_rgb: missing" in str(labelling.value)
        assert target.read_bytes() == broken.read_bytes()  # the file is untouched


def test_labels_do_not_depend_on_the_number_of_lanes(demo_file, model, tmp_path):
    got = {}
    for lanes in (1, 2, 3):
        target = tmp_path / f"lanes-{lanes}.h5"
        shutil.copyfile(demo_file, target)
        threads = torch.get_num_threads()
        label(target, model, "prm", batch=24, progress_bar=False, lanes=lanes)
        assert torch.get_num_threads() == threads  # restored
        with DemoReader(target) as reader:
            got[lanes] = [reader.labels("prm", i) for i in range(len(reader))]
    with DemoReader(demo_file) as reader:
        direct = model.predict(reader.multiview(2), INSTRUCTION)["progress"].numpy()
    for lanes in (2, 3):
        assert all(np.array_equal(a, b) for a, b in zip(got[1], got[lanes], strict=True))
    assert np.allclose(got[1][2], direct, atol=1e-5)


def test_torn_journal_resumes_to_the_same_labels_without_redoing_episodes(demo_file, model, tmp_path, monkeypatch):
    reference, target = tmp_path / "reference.h5", tmp_path / "target.h5"
    shutil.copyfile(demo_file, reference)
    label(reference, model, "prm", batch=48, progress_bar=False)
    with DemoReader(reference) as reader:
        expected = [reader.labels("prm", i) for i in range(len(reader))]

    shutil.copyfile(demo_file, target)
    journal = sidecar(target, "prm")
    shutil.copyfile(demo_file, tmp_path / "scratch.h5")  # a full run's journal, kept by failing the merge
    monkeypatch.setattr("robo_reward.label._merge", _fail)
    with pytest.raises(RuntimeError, match="merge"):
        label(tmp_path / "scratch.h5", model, "prm", batch=48, progress_bar=False)
    monkeypatch.undo()
    whole = sidecar(tmp_path / "scratch.h5", "prm").read_bytes()
    records = _record_ends(whole)
    assert len(records) == len(LENGTHS)
    journal.write_bytes(whole[: records[2] + 9])  # three whole records, then a torn fourth

    seen = []
    predict = ProgressRewardModel.predict
    monkeypatch.setattr(ProgressRewardModel, "predict", lambda self, f, *a: seen.append(len(f)) or predict(self, f, *a))
    label(target, model, "prm", batch=48, progress_bar=False)
    assert sum(seen) < sum(LENGTHS)  # batches holding only the three committed episodes were skipped
    with DemoReader(target) as reader:
        for i, want in enumerate(expected):
            assert np.array_equal(reader.labels("prm", i), want)
    assert not journal.exists()

    other = ProgressRewardModel(PRMConfig(cameras=CAMERAS, instructions=[INSTRUCTION], image_size=32)).eval()
    shutil.copyfile(demo_file, target)
    journal.write_bytes(whole)  # a whole journal, but of another model: not resumed
    label(target, other, "prm", batch=48, progress_bar=False)
    with DemoReader(target) as reader:
        fresh = other.predict(reader.multiview(0), INSTRUCTION)["progress"].numpy()
        assert np.allclose(reader.labels("prm", 0), fresh, atol=1e-5)
        assert not np.allclose(reader.labels("prm", 0), expected[0], atol=1e-3)


def _fail(*args):
    raise RuntimeError("merge refused for the test")


def _record_ends(blob: bytes) -> list[int]:
    ends, pos = [], 4 + 32  # magic, sha256
    while pos < len(blob):
        _, name_bytes, frames = _RECORD.unpack_from(blob, pos)
        pos += _RECORD.size + name_bytes + 4 * frames
        ends.append(pos)
    return ends


def test_bench_label_prints_its_json(capsys):
    args = ["bench", "label", "--num-demos", "3", "--rounds", "1", "--batch", "64", "--json"]
    assert cli(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] > 0 and result["frames_per_s"] > 0 and result["model_frames_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["frames_per_s"] / result["model_frames_per_s"], rel=0.01)
    assert result["naive_frames_per_s"] > 0 and result["model_lanes_frames_per_s"] > 0
    assert result["ratio_vs_model_lanes"] == pytest.approx(
        result["frames_per_s"] / result["model_lanes_frames_per_s"], rel=0.01
    )
    # the lanes' own timing: busy for part of the run, never more than all of it, at rates of their own
    assert 0 < result["lanes_busy"] <= 1.0
    assert result["decode_frames_per_s_in_lanes"] > 0 and result["forward_frames_per_s_in_lanes"] > 0


def test_a_vision_language_reward_labels_too(demo_file, tmp_path):
    from robo_reward.models.vlm import VLMConfig, VLMReward

    torch.manual_seed(0)
    vlm = VLMReward(VLMConfig(cameras=["front"])).eval()  # resizes the file's 32 px frames to its 64
    target = tmp_path / "vlm.h5"
    shutil.copyfile(demo_file, target)
    label(target, vlm, "vlm", batch=40, progress_bar=False)
    with DemoReader(target) as reader:
        for i in (0, 3):
            want = vlm.progress(reader.multiview(i, cameras=["front"]), INSTRUCTION, ["front"]).numpy()
            assert np.allclose(reader.labels("vlm", i), want, atol=1e-4)


def test_bench_label_runs_a_trained_model(tmp_path, capsys):
    push = "push the red cube onto the green goal"
    ProgressRewardModel(PRMConfig(cameras=["wrist"], instructions=[push], image_size=32, channels=[8, 16])).save(
        tmp_path / "small"
    )
    args = ["bench", "label", "--num-demos", "2", "--rounds", "1", "--batch", "32", "--model", str(tmp_path / "small")]
    assert cli([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images_per_frame"] == 1 and result["model"] == str(tmp_path / "small")
    assert result["parameters"] == sum(p.numel() for p in load(tmp_path / "small").parameters())


def test_a_second_run_on_the_same_labels_is_refused_while_the_first_holds_them(demo_file, model, tmp_path):
    from robo_reward.label import _fingerprint, _open_journal

    target = tmp_path / "busy.h5"
    shutil.copyfile(demo_file, target)
    journal, _ = _open_journal(sidecar(target, "prm"), _fingerprint(model, CAMERAS, 48, False))
    try:
        assert cli(["label", str(target), "--model", str(_saved(model, tmp_path)), "--name", "prm"]) == 2
    finally:
        journal.close()
    label(target, model, "prm", batch=48, progress_bar=False)  # free again once the holder is gone


def _saved(model: ProgressRewardModel, folder: Path) -> Path:
    model.save(folder / "model")
    return folder / "model"
