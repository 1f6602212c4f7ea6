"""Malformed demo files: every corruption of a valid file is reported as one line, never as a crash.

A small valid file (2 episodes × 5 steps × 2 cameras of 8×8 px, privileged progress/stage and a labels
group) is copied and damaged in one random way per example. ``validate`` must raise
:class:`DemoFileError` with a one-line message that starts with the file's path and, for damage inside
an episode, names the episode and the key; ``robo-reward validate`` must exit 2 with that line; and
neither may change the file. Random byte overwrites can land in padding or in raw values and leave a
valid file: then the whole file must read without error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from robo_reward import cli
from robo_reward.data import DemoClipDataset, DemoFileError, DemoReader, DemoWriter, Episode, validate
from robo_reward.data.format import open_h5

T, SIZE, CAMERAS, DEMOS = 5, 8, ("front", "wrist"), ("demo_0", "demo_1")
FLOAT_KEYS = ("actions", "obs/state", "rewards", "privileged/progress")
EPISODE_KEYS = ("actions", "obs/state", "rewards", "dones", "obs/front_rgb", "obs/wrist_rgb")
HEADER_ATTRS = ("schema_version", "task", "instruction", "fps", "cameras", "env_args")


def _write_base(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with DemoWriter(path, task="reach", instruction="reach", fps=20.0, cameras=list(CAMERAS),
                    env_args={"seed": 0}, stage_names=["approach", "at_target"]) as writer:  # fmt: skip
        for index in range(len(DEMOS)):
            writer.add(
                Episode(
                    frames={cam: rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8) for cam in CAMERAS},
                    state=rng.normal(size=(T, 3)).astype(np.float32),
                    actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                    rewards=rng.normal(size=T).astype(np.float32),
                    dones=(np.arange(T) == T - 1).astype(np.uint8),
                    success=bool(index),
                    source="fuzz",
                    privileged={"progress": np.linspace(0, 1, T, dtype=np.float32), "stage": np.zeros(T, np.int32)},
                    attrs={"mode": "expert"},
                )
            )
    with open_h5(path, "a") as f:  # labels added the way `robo-reward label` adds them
        for name in DEMOS:
            f.create_dataset(f"labels/prm/{name}/progress", data=np.linspace(0.1, 0.9, T, dtype=np.float32))
    return path


@pytest.fixture(scope="module")
def workdir() -> Path:
    """A folder holding ``base.h5``, the valid file every example starts from."""
    with tempfile.TemporaryDirectory() as folder:
        validate(_write_base(Path(folder) / "base.h5"))
        yield Path(folder)


def _replace(group: h5py.Group, key: str, data: np.ndarray) -> None:
    del group[key]
    group.create_dataset(key, data=data)


# Each corruption: (draw, file) -> (demo, key) that the message must name; demo None for file-level
# damage, and key None when no particular key can be expected. Returning "maybe" marks damage that
# may leave a valid file.


def delete_key(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    key = draw(st.sampled_from((*EPISODE_KEYS, "@num_samples", "@success", "@source")))
    group = f["data"][demo]
    if key.startswith("@"):
        del group.attrs[key[1:]]
    else:
        del group[key]
    return demo, key


def _array(draw, f):
    """An episode's dataset, drawn: (demo, key, its group, its values)."""
    demo = draw(st.sampled_from(DEMOS))
    key = draw(st.sampled_from((*EPISODE_KEYS, "privileged/progress", "privileged/stage")))
    group = f["data"][demo]
    return demo, key, group, group[key][()]


def wrong_dtype(draw, f):
    demo, key, group, values = _array(draw, f)
    choices = [np.float64, np.float16, np.int32, np.uint16, np.int8, bool]
    dtype = draw(st.sampled_from([d for d in choices if np.dtype(d) != values.dtype]))
    _replace(group, key, values.astype(dtype))
    return demo, key


def wrong_shape(draw, f):
    demo, key, group, values = _array(draw, f)
    how = draw(st.sampled_from(("add_axis", "drop_axis", "flatten")))
    if how == "add_axis":
        changed = values[..., None]
    elif how == "drop_axis" and values.ndim > 1:
        changed = values[..., 0]
    else:
        changed = values.reshape(T, -1)[:, 0] if values.ndim > 1 else values.reshape(1, T)
    _replace(group, key, changed)
    return demo, key


def non_finite(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    key = draw(st.sampled_from(FLOAT_KEYS))
    ds = f["data"][demo][key]
    values = ds[()]
    index = tuple(draw(st.integers(0, n - 1)) for n in values.shape)
    values[index] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
    ds[...] = values
    return demo, key


def bad_channels(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    key = f"obs/{draw(st.sampled_from(CAMERAS))}_rgb"
    values = f["data"][demo][key][()]
    channels = draw(st.sampled_from((1, 4)))
    _replace(f["data"][demo], key, np.concatenate([values, values], axis=3)[..., :channels])
    return demo, key


def bad_length(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    key = draw(st.sampled_from((*EPISODE_KEYS, "privileged/progress", "privileged/stage", "labels")))
    values = (f[f"labels/prm/{demo}/progress"] if key == "labels" else f["data"][demo][key])[()]
    changed = values[: draw(st.integers(0, T - 1))] if draw(st.booleans()) else np.concatenate([values, values[:2]])
    if key == "labels":
        _replace(f[f"labels/prm/{demo}"], "progress", changed)
        return demo, f"/labels/prm/{demo}/progress"
    _replace(f["data"][demo], key, changed)
    return demo, key  # a shorter or longer actions: "obs/state: length 5 does not match actions (6)"


def bad_num_samples(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    f["data"][demo].attrs["num_samples"] = draw(st.sampled_from((0, T - 1, T + 1, -T, 10**6, "5", 5.0)))
    return demo, "@num_samples"


def bad_dones(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    f["data"][demo]["dones"][draw(st.integers(0, T - 1))] = draw(st.sampled_from((2, 3, 255)))
    return demo, "dones"


def bad_progress_range(draw, f):
    demo = draw(st.sampled_from(DEMOS))
    key = draw(st.sampled_from(("privileged/progress", "labels")))
    ds = f["data"][demo][key] if key != "labels" else f[f"labels/prm/{demo}/progress"]
    ds[draw(st.integers(0, T - 1))] = draw(st.sampled_from((-0.5, 1.5, 100.0)))
    return demo, key if key != "labels" else f"/labels/prm/{demo}/progress"


def bad_header(draw, f):
    attr = draw(st.sampled_from((*HEADER_ATTRS, "total", "stage_names")))
    attrs = f["data"].attrs
    if attr not in ("total", "stage_names") and draw(st.booleans()):
        del attrs[attr]
    else:
        attrs[attr] = draw(
            st.sampled_from(
                {
                    "schema_version": (0, 99, "1", 1.5),
                    "task": (3, np.zeros(2)),
                    "instruction": (1.0,),
                    "fps": (0.0, -20.0, np.nan, np.inf, "fast"),
                    "cameras": ("front", '"front"', "[1, 2]", '["front"', '["front", "front"]', 7),
                    "env_args": ("{", "[1]", 5),
                    "total": (0, 11, "10"),
                    "stage_names": ("{}", "x"),
                }[attr]
            )
        )
    return None, f"/data@{attr}"


def bad_structure(draw, f):
    what = draw(st.sampled_from(("no_data", "stray_entry", "demo_dataset", "labels_for_ghost", "empty_episode")))
    if what == "no_data":
        del f["data"]
        return None, "/data"
    if what == "stray_entry":
        f["data"].create_group("mask")
        return None, "/data/mask"
    if what == "demo_dataset":
        f["data"].create_dataset("demo_7", data=np.zeros(3))
        return "demo_7", None
    if what == "labels_for_ghost":
        f.create_dataset("labels/prm/demo_9/progress", data=np.zeros(T, np.float32))
        return "demo_9", "/labels/prm/demo_9/progress"
    group = f["data"]["demo_1"]
    for key in EPISODE_KEYS:
        _replace(group, key, group[key][:0])
    return "demo_1", "actions"


H5_CORRUPTIONS = {
    "delete_key": delete_key,
    "wrong_dtype": wrong_dtype,
    "wrong_shape": wrong_shape,
    "non_finite": non_finite,
    "bad_channels": bad_channels,
    "bad_length": bad_length,
    "bad_num_samples": bad_num_samples,
    "bad_dones": bad_dones,
    "bad_progress_range": bad_progress_range,
    "bad_header": bad_header,
    "bad_structure": bad_structure,
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_everything(path: Path) -> None:
    """What training and the CLI do with a file that validated: none of it may fail."""
    with DemoReader(path) as reader:
        reader.summary()
        for index in range(len(reader)):
            reader.episode(index)
            reader.multiview(index, 1, 3)
            for model in reader.label_models():
                reader.labels(model, index)
    dataset = DemoClipDataset(path, clip_len=2)
    for item in range(len(dataset)):
        dataset[item]


def _cli_validate(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["validate", str(path)])
    return code, err.getvalue()


@pytest.mark.parametrize("kind", ["truncate", "overwrite", *H5_CORRUPTIONS])
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_corruption_is_one_line_exit_2_and_leaves_the_file_alone(workdir, kind, data):
    """13 kinds × 30 examples: 390 damaged files."""
    folder, base = workdir, (workdir / "base.h5").read_bytes()
    path = folder / f"case-{kind}.h5"
    path.write_bytes(base)
    maybe_valid, demo, key = False, None, None
    if kind == "truncate":
        path.write_bytes(base[: data.draw(st.integers(0, len(base) - 1), label="offset")])
    elif kind == "overwrite":
        offset = data.draw(st.integers(0, len(base) - 1), label="offset")
        noise = data.draw(st.binary(min_size=1, max_size=32), label="bytes")
        damaged = bytearray(base)
        damaged[offset : offset + len(noise)] = noise
        path.write_bytes(bytes(damaged[: len(base)]))
        maybe_valid = True
    else:
        with h5py.File(path, "r+") as f:
            demo, key = H5_CORRUPTIONS[kind](data.draw, f)
    before = _digest(path)

    try:
        validate(path)
    except DemoFileError as exc:
        message = str(exc)
    else:
        assert maybe_valid, f"{kind}: the damaged file validated"
        event("overwrite left a valid file")
        _read_everything(path)
        assert _cli_validate(path)[0] == 0
        assert _digest(path) == before
        return
    event(f"{kind}: DemoFileError")
    assert "\n" not in message and message.startswith(f"{path}: "), message
    if demo is not None:
        assert message.startswith(f"{path}: {demo}: "), message
    if key is not None:
        assert key in message, message
    code, err = _cli_validate(path)
    assert code == 2 and err == f"robo-reward validate: error: {message}\n"
    assert _digest(path) == before


def test_the_base_file_is_valid_and_fully_readable(workdir):
    path = workdir / "base.h5"
    assert validate(path) == {"episodes": 2, "frames": 10, "cameras": list(CAMERAS)}
    _read_everything(path)


def test_a_damaged_frame_chunk_fails_validation_not_training(workdir):
    """Frames are compressed; a broken chunk must be found by validate (which decodes every frame)."""
    base = (workdir / "base.h5").read_bytes()
    path = workdir / "chunk.h5"
    path.write_bytes(base)
    with h5py.File(path, "r") as f:
        offset = f["data/demo_1/obs/wrist_rgb"].id.get_chunk_info(3).byte_offset
    damaged = bytearray(base)
    damaged[offset + 10 : offset + 30] = bytes(20)
    path.write_bytes(bytes(damaged))
    with pytest.raises(DemoFileError) as info:
        validate(path)
    assert str(info.value).startswith(f"{path}: demo_1: obs/wrist_rgb: unreadable content")


@pytest.mark.parametrize("what", ["empty", "folder", "missing", "text"])
def test_paths_that_are_not_demo_files(workdir, what):
    path = workdir / f"not-{what}.h5"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "folder":
        path.mkdir(exist_ok=True)
    elif what == "text":
        path.write_text("robo_reward\n" * 1000)
    with pytest.raises(DemoFileError) as info:
        validate(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert ("no such file" if what == "missing" else "not a readable HDF5 file") in message
    assert _cli_validate(path) == (2, f"robo-reward validate: error: {message}\n")
