"""The demo file layout (HDF5, robomimic-compatible) and its validation.

    /data                          attrs: schema_version, task, instruction, fps, cameras, env_args (json), total
    /data/demo_<i>/obs/<cam>_rgb   uint8 (T, H, W, 3), one chunk per frame, gzip
    /data/demo_<i>/obs/state       float32 (T, D)       what the robot measures (D may be 0)
    /data/demo_<i>/actions         float32 (T, A)       (A may be 0 for video-only demos)
    /data/demo_<i>/rewards         float32 (T,)         task reward
    /data/demo_<i>/dones           uint8 (T,)
    /data/demo_<i>/privileged/*    simulation-only truth: progress float32 (T,), stage int32 (T,)
    /data/demo_<i>                 attrs: num_samples, success, source
    /labels/<model>/demo_<i>/progress   float32 (T,)   written by `robo-reward label`

Privileged data is kept in its own group so nothing trained "from video" reads it by accident.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

SCHEMA_VERSION = 1
DEMO_PATTERN = re.compile(r"^demo_(\d+)$")
HEADER_ATTRS = ("schema_version", "task", "instruction", "fps", "cameras")


class DemoFileError(ValueError):
    """A demo file that cannot be used; the message is one line naming file, episode and key."""

    def __init__(self, path: str | Path, message: str, demo: str | None = None, key: str | None = None) -> None:
        where = ": ".join(str(part) for part in (path, demo, key) if part is not None)
        super().__init__(f"{where}: {message}")


def demo_names(group: h5py.Group) -> list[str]:
    """``demo_<i>`` names sorted by i (not as strings: demo_10 after demo_9)."""
    names = [name for name in group if DEMO_PATTERN.match(name)]
    return sorted(names, key=lambda name: int(DEMO_PATTERN.match(name).group(1)))


def camera_key(camera: str) -> str:
    return f"{camera}_rgb"


def decode_attr(value):
    return value.decode() if isinstance(value, bytes) else value


def read_cameras(data: h5py.Group) -> list[str]:
    raw = decode_attr(data.attrs["cameras"])
    return json.loads(raw) if isinstance(raw, str) else [decode_attr(c) for c in raw]


def open_h5(path: str | Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file, turning h5py's errors into one-line :class:`DemoFileError`."""
    try:
        return h5py.File(path, mode)
    except FileNotFoundError:
        raise DemoFileError(path, "no such file") from None
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DemoFileError(path, f"not a readable HDF5 file (truncated or corrupt?): {reason}") from None


def validate(path: str | Path) -> dict:
    """Check every part of the layout; return a summary or raise :class:`DemoFileError` at the first problem."""
    with open_h5(path) as f:
        try:
            return _validate_open(path, f)
        except DemoFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # corrupt internals
            raise DemoFileError(path, f"unreadable content: {str(exc).splitlines()[0]}") from None


def _validate_open(path: str | Path, f: h5py.File) -> dict:
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        raise DemoFileError(path, "missing group", key="/data")
    data = f["data"]
    for attr in HEADER_ATTRS:
        if attr not in data.attrs:
            raise DemoFileError(path, "missing attribute", key=f"/data@{attr}")
    fps = float(data.attrs["fps"])
    if not np.isfinite(fps) or fps <= 0:
        raise DemoFileError(path, f"fps must be positive, got {fps}", key="/data@fps")
    try:
        cameras = read_cameras(data)
    except (ValueError, TypeError) as exc:
        raise DemoFileError(path, f"cameras must be a JSON list of names ({exc})", key="/data@cameras") from None
    names = demo_names(data)
    frames = 0
    for name in names:
        frames += _validate_demo(path, name, data[name], cameras)
    for extra in data:
        if not DEMO_PATTERN.match(extra):
            raise DemoFileError(path, "unexpected entry (episodes are demo_<i>)", key=f"/data/{extra}")
    if "labels" in f:
        _validate_labels(path, f["labels"], data)
    return {"episodes": len(names), "frames": frames, "cameras": cameras}


def _dataset(path, demo: str, group: h5py.Group, key: str) -> h5py.Dataset:
    if key not in group or not isinstance(group[key], h5py.Dataset):
        raise DemoFileError(path, "missing dataset", demo, key)
    return group[key]


def _check(path, demo, key, ds: h5py.Dataset, dtype, shape_tail: tuple, length: int | None, finite: bool = False):
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
    if finite:
        values = ds[()]
        if not np.isfinite(values).all():
            row = int(np.argwhere(~np.isfinite(values))[0][0])
            raise DemoFileError(path, f"NaN or inf at step {row}", demo, key)


def _validate_demo(path, name: str, demo: h5py.Group, cameras: list[str]) -> int:
    if not isinstance(demo, h5py.Group):
        raise DemoFileError(path, "not a group", name)
    actions = _dataset(path, name, demo, "actions")
    if actions.ndim != 2:
        raise DemoFileError(path, f"expected float32 (T, A), got {actions.dtype} {actions.shape}", name, "actions")
    length = actions.shape[0]
    if length == 0:
        raise DemoFileError(path, "empty episode (0 steps)", name, "actions")
    _check(path, name, "actions", actions, np.float32, (None,), length, finite=True)
    _check(path, name, "obs/state", _dataset(path, name, demo, "obs/state"), np.float32, (None,), length, True)
    _check(path, name, "rewards", _dataset(path, name, demo, "rewards"), np.float32, (), length, finite=True)
    dones = _dataset(path, name, demo, "dones")
    _check(path, name, "dones", dones, np.uint8, (), length)
    if not np.isin(dones[()], (0, 1)).all():
        raise DemoFileError(path, "values must be 0 or 1", name, "dones")
    for camera in cameras:
        key = f"obs/{camera_key(camera)}"
        _check(path, name, key, _dataset(path, name, demo, key), np.uint8, (None, None, 3), length)
    for attr in ("num_samples", "success", "source"):
        if attr not in demo.attrs:
            raise DemoFileError(path, "missing attribute", name, f"@{attr}")
    if int(demo.attrs["num_samples"]) != length:
        raise DemoFileError(path, f"num_samples {demo.attrs['num_samples']} != {length} steps", name, "@num_samples")
    if "privileged" in demo:
        priv = demo["privileged"]
        if "progress" in priv:
            progress = _dataset(path, name, demo, "privileged/progress")
            _check(path, name, "privileged/progress", progress, np.float32, (), length, finite=True)
        if "stage" in priv:
            _check(path, name, "privileged/stage", _dataset(path, name, demo, "privileged/stage"), np.int32, (), length)
    return length


def _validate_labels(path, labels: h5py.Group, data: h5py.Group) -> None:
    for model in labels:
        for name in labels[model]:
            key = f"/labels/{model}/{name}/progress"
            if name not in data:
                raise DemoFileError(path, "labels for an episode that does not exist", name, key)
            ds = _dataset(path, name, labels[model][name], "progress")
            _check(path, name, key, ds, np.float32, (), data[name]["actions"].shape[0], finite=True)
