"""The demo file layout (HDF5, robomimic-compatible) and its validation.

    /data                          attrs: schema_version, task, instruction, fps, cameras, env_args (json), total
    /data/demo_<i>/obs/<cam>_rgb   uint8 (T, H, W, 3), one chunk per frame, gzip; one (H, W) for the whole file
    /data/demo_<i>/obs/state       float32 (T, D)       what the robot measures (D may be 0)
    /data/demo_<i>/actions         float32 (T, A)       (A may be 0 for video-only demos)
    /data/demo_<i>/rewards         float32 (T,)         task reward
    /data/demo_<i>/dones           uint8 (T,)
    /data/demo_<i>/privileged/*    simulation-only truth: progress float32 (T,) in [0, 1], stage int32 (T,)
    /data/demo_<i>                 attrs: num_samples, success, source
    /labels/<model>/demo_<i>/progress   float32 (T,) in [0, 1]   written by `robo-reward label`

Privileged data is kept in its own group so nothing trained "from video" reads it by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

SCHEMA_VERSION = 1
DEMO_PATTERN = re.compile(r"^demo_([0-9]+)$")
HEADER_ATTRS = ("schema_version", "task", "instruction", "fps", "cameras", "env_args")
FRAME_BLOCK = 64  # frames decoded at a time while validating (bounded memory on long episodes)


class DemoFileError(ValueError):
    """A demo file that cannot be used; the message is one line naming file, episode and key."""

    def __init__(self, path: str | Path, message: str, demo: str | None = None, key: str | None = None) -> None:
        where = ": ".join(str(part) for part in (path, demo, key) if part is not None)
        super().__init__(" ".join(f"{where}: {message}".split()))

    def __reduce__(self):  # crosses a process boundary (from a labelling lane) as its finished message
        return _demo_file_error, (str(self),)


def _demo_file_error(message: str) -> DemoFileError:
    error = DemoFileError.__new__(DemoFileError)
    ValueError.__init__(error, message)
    return error


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` — h5py's errors can span several lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def demo_names(group: h5py.Group) -> list[str]:
    """``demo_<i>`` names sorted by i (not as strings: demo_10 after demo_9)."""
    names = [name for name in group if DEMO_PATTERN.match(name)]
    return sorted(names, key=lambda name: int(DEMO_PATTERN.match(name).group(1)))


def camera_key(camera: str) -> str:
    return f"{camera}_rgb"


def decode_attr(value):
    """str for a stored string (fixed-length ones come back as bytes), list of str for an array of them."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.ndim == 1:
        return [decode_attr(item) for item in value.tolist()]
    return value


def encode_attr(value):
    """A value to store as an attribute. Strings become fixed-length UTF-8, kept inside the object header,
    which HDF5 checksums; h5py would put a ``str`` in the global heap, which has no checksum — a damaged
    heap then hangs the HDF5 library instead of raising."""
    if isinstance(value, str):
        raw = value.encode()
        return np.array(raw, dtype=h5py.string_dtype("utf-8", max(1, len(raw))))
    if isinstance(value, list | tuple) and value and all(isinstance(item, str) for item in value):
        raw = [item.encode() for item in value]
        return np.array(raw, dtype=h5py.string_dtype("utf-8", max(1, *map(len, raw))))
    return value


def set_attrs(obj: h5py.HLObject, values: dict) -> None:
    for key, value in values.items():
        obj.attrs[key] = encode_attr(value)


def read_cameras(data: h5py.Group) -> list[str]:
    raw = decode_attr(data.attrs["cameras"])
    cameras = json.loads(raw) if isinstance(raw, str) else [decode_attr(c) for c in raw]
    if not isinstance(cameras, list) or not all(isinstance(c, str) and c for c in cameras):
        raise ValueError(f"expected a list of camera names, got {cameras!r}")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"camera names repeat: {cameras}")
    return cameras


def open_h5(path: str | Path, mode: str = "r", **kwargs) -> h5py.File:
    """Open an HDF5 file, turning h5py's errors into one-line :class:`DemoFileError`.

    Opened for writing, objects created get the latest file format (``libver="latest"``): their
    headers and indexes carry checksums, so later damage is detected instead of misread."""
    if mode != "r":
        kwargs.setdefault("libver", "latest")
    try:
        return h5py.File(path, mode, **kwargs)
    except FileNotFoundError:
        raise DemoFileError(path, "no such file") from None
    except Exception as exc:  # OSError mostly; a corrupt superblock can surface as other types
        raise DemoFileError(path, f"not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}") from None


class _Invalid(ValueError):
    """A value of the wrong kind (reported as is, not as unreadable content)."""


@contextmanager
def reading(path: str | Path, demo: str | None = None, key: str | None = None) -> Iterator[None]:
    """Turn any error met while reading (corrupt internals raise many types) into a :class:`DemoFileError`."""
    try:
        yield
    except DemoFileError:
        raise
    except _Invalid as exc:
        raise DemoFileError(path, str(exc), demo, key) from None
    except Exception as exc:
        raise DemoFileError(path, f"unreadable content ({first_line(exc)})", demo, key) from None


def validate(path: str | Path) -> dict:
    """Check every part of the layout and decode every value (frames included); return a summary or
    raise :class:`DemoFileError` at the first problem. The file is opened read-only."""
    with reading(path), open_h5(path) as f:
        return _validate_open(path, f)


def _validate_open(path: str | Path, f: h5py.File) -> dict:
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        raise DemoFileError(path, "missing group", key="/data")
    data = f["data"]
    cameras = _validate_header(path, data)
    names = demo_names(data)
    for extra in data:
        if not DEMO_PATTERN.match(extra):
            raise DemoFileError(path, "unexpected entry (episodes are demo_<i>)", key=f"/data/{extra}")
    if not names:  # nothing to train or label on: refused here rather than deep inside a trainer
        raise DemoFileError(path, "no episodes (/data/demo_<i>)", key="/data")
    frames, image_size = 0, None
    for name in names:
        with reading(path, name):
            length, image_size = _validate_demo(path, name, data[name], cameras, image_size)
        frames += length
    if "total" in data.attrs:
        with reading(path, key="/data@total"):
            total = _integer(data.attrs["total"])
        if total != frames:
            raise DemoFileError(path, f"total {total} != {frames} steps in the episodes", key="/data@total")
    if "labels" in f:
        _validate_labels(path, f["labels"], data)
    return {"episodes": len(names), "frames": frames, "cameras": cameras}


def _integer(value) -> int:
    """An integer attribute (Python or numpy, any width); ValueError for anything else."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise _Invalid(f"expected an integer, got {value!r}")
    return int(value)


def _text(value) -> str:
    value = decode_attr(value)
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {value!r}")
    return value


def _json(value, kind: type):
    try:
        parsed = json.loads(_text(value))
    except json.JSONDecodeError as exc:
        raise _Invalid(f"not JSON ({exc})") from None
    if not isinstance(parsed, kind):
        raise _Invalid(f"expected a JSON {kind.__name__}, got {parsed!r}")
    return parsed


def _validate_header(path, data: h5py.Group) -> list[str]:
    for attr in HEADER_ATTRS:
        if attr not in data.attrs:
            raise DemoFileError(path, "missing attribute", key=f"/data@{attr}")
    with reading(path, key="/data@schema_version"):
        version = _integer(data.attrs["schema_version"])
    if not 1 <= version <= SCHEMA_VERSION:
        raise DemoFileError(path, f"unsupported schema_version {version} (this code reads 1..{SCHEMA_VERSION})",
                            key="/data@schema_version")  # fmt: skip
    for attr in ("task", "instruction"):
        with reading(path, key=f"/data@{attr}"):
            _text(data.attrs[attr])
    with reading(path, key="/data@fps"):
        fps = data.attrs["fps"]
        if not isinstance(fps, int | float | np.integer | np.floating) or isinstance(fps, bool | np.bool_):
            raise _Invalid(f"expected a number, got {fps!r}")
        fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise DemoFileError(path, f"fps must be positive, got {fps}", key="/data@fps")
    try:
        cameras = read_cameras(data)
    except Exception as exc:
        raise DemoFileError(path, f"cameras must be a JSON list of names ({first_line(exc)})",
                            key="/data@cameras") from None  # fmt: skip
    with reading(path, key="/data@env_args"):
        _json(data.attrs["env_args"], dict)
    if "stage_names" in data.attrs:
        with reading(path, key="/data@stage_names"):
            _json(data.attrs["stage_names"], list)
    return cameras


def _dataset(path, demo: str, group: h5py.Group, key: str) -> h5py.Dataset:
    if key not in group or not isinstance(group[key], h5py.Dataset):
        raise DemoFileError(path, "missing dataset", demo, key)
    return group[key]


def _check(path, demo, key, ds: h5py.Dataset, dtype, shape_tail: tuple, length: int | None):
    want_ndim = 1 + len(shape_tail)
    if (
        ds.dtype != dtype
        or ds.ndim != want_ndim
        or any(want is not None and got != want for got, want in zip(ds.shape[1:], shape_tail, strict=False))
    ):
        tail = ", ".join("*" if d is None else str(d) for d in shape_tail)
        expected = f"{np.dtype(dtype).name} (T{', ' if tail else ''}{tail})"
        raise DemoFileError(path, f"expected {expected}, got {ds.dtype} {ds.shape}", demo, key)
    if length is not None and ds.shape[0] != length:
        raise DemoFileError(path, f"length {ds.shape[0]} does not match actions ({length})", demo, key)


def _values(path, demo, key, ds: h5py.Dataset, finite: bool = False, unit: bool = False) -> np.ndarray:
    """Read the whole dataset; with ``finite`` refuse NaN/inf, with ``unit`` values outside [0, 1]."""
    with reading(path, demo, key):
        values = ds[()]
    if finite and not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise DemoFileError(path, f"NaN or inf at step {row}", demo, key)
    if unit and not ((values >= 0) & (values <= 1)).all():
        row = int(np.argwhere((values < 0) | (values > 1))[0][0])
        raise DemoFileError(path, f"value {values[row]} at step {row} is outside [0, 1]", demo, key)
    return values


def _validate_demo(path, name: str, demo: h5py.Group, cameras: list[str], image_size) -> tuple[int, tuple | None]:
    """Check one episode; returns its length and the file's image size (H, W) so far."""
    if not isinstance(demo, h5py.Group):
        raise DemoFileError(path, "not a group", name)
    actions = _dataset(path, name, demo, "actions")
    if actions.ndim != 2:
        raise DemoFileError(path, f"expected float32 (T, A), got {actions.dtype} {actions.shape}", name, "actions")
    length = actions.shape[0]
    if length == 0:
        raise DemoFileError(path, "empty episode (0 steps)", name, "actions")
    for key, dtype, tail in (("actions", np.float32, (None,)), ("obs/state", np.float32, (None,)),
                             ("rewards", np.float32, ())):  # fmt: skip
        ds = _dataset(path, name, demo, key)
        _check(path, name, key, ds, dtype, tail, length)
        _values(path, name, key, ds, finite=True)
    dones = _dataset(path, name, demo, "dones")
    _check(path, name, "dones", dones, np.uint8, (), length)
    if not np.isin(_values(path, name, "dones", dones), (0, 1)).all():
        raise DemoFileError(path, "values must be 0 or 1", name, "dones")
    for camera in cameras:
        key = f"obs/{camera_key(camera)}"
        ds = _dataset(path, name, demo, key)
        _check(path, name, key, ds, np.uint8, (None, None, 3), length)
        size = tuple(int(d) for d in ds.shape[1:3])
        if min(size) < 1:
            raise DemoFileError(path, f"empty images {ds.shape}", name, key)
        if image_size is not None and size != image_size:
            raise DemoFileError(path, f"image size {size} differs from the file's {image_size}", name, key)
        image_size = size
        with reading(path, name, key):  # decode every chunk: a damaged one must fail here, not in training
            for start in range(0, length, FRAME_BLOCK):
                ds[start : start + FRAME_BLOCK]
    for attr in ("num_samples", "success", "source"):
        if attr not in demo.attrs:
            raise DemoFileError(path, "missing attribute", name, f"@{attr}")
    with reading(path, name, "@num_samples"):
        num_samples = _integer(demo.attrs["num_samples"])
    if num_samples != length:
        raise DemoFileError(path, f"num_samples {num_samples} != {length} steps", name, "@num_samples")
    success = demo.attrs["success"]
    if not isinstance(success, bool | np.bool_) and not (isinstance(success, int | np.integer) and success in (0, 1)):
        raise DemoFileError(path, f"expected a bool, got {success!r}", name, "@success")
    with reading(path, name, "@source"):
        _text(demo.attrs["source"])
    if "privileged" in demo:
        priv = demo["privileged"]
        if not isinstance(priv, h5py.Group):
            raise DemoFileError(path, "not a group", name, "privileged")
        if "progress" in priv:
            progress = _dataset(path, name, demo, "privileged/progress")
            _check(path, name, "privileged/progress", progress, np.float32, (), length)
            _values(path, name, "privileged/progress", progress, finite=True, unit=True)
        if "stage" in priv:
            stage = _dataset(path, name, demo, "privileged/stage")
            _check(path, name, "privileged/stage", stage, np.int32, (), length)
            _values(path, name, "privileged/stage", stage)
    return length, image_size


def _validate_labels(path, labels, data: h5py.Group) -> None:
    """``/labels/<model>/demo_<i>/progress``, looked up by full path as :class:`DemoReader` does."""
    if not isinstance(labels, h5py.Group):
        raise DemoFileError(path, "not a group", key="/labels")
    for model in labels:
        if not isinstance(labels[model], h5py.Group):
            raise DemoFileError(path, "not a group (labels/<model>/demo_<i>/progress)", key=f"/labels/{model}")
        for name in labels[model]:
            key = f"/labels/{model}/{name}/progress"
            if name not in data or not DEMO_PATTERN.match(name):
                raise DemoFileError(path, "labels for an episode that does not exist", name, key)
            with reading(path, name, key):
                if key not in labels.file or not isinstance(labels.file[key], h5py.Dataset):
                    raise DemoFileError(path, "missing dataset", name, key)
                ds = labels.file[key]
                _check(path, name, key, ds, np.float32, (), data[name]["actions"].shape[0])
            _values(path, name, key, ds, finite=True, unit=True)
