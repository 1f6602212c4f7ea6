"""Writing demo files so that a crash never leaves a damaged file in place of a good one.

A :class:`DemoWriter` always works on a temporary file in the destination's folder and renames it over
the destination on :meth:`DemoWriter.commit` / :meth:`DemoWriter.close` (``os.replace`` is atomic on
POSIX; the temp file is fsynced first so the rename never publishes data still in flight). Appending
starts from a byte copy of the existing file, so the original stays intact until the rename; episodes
already in the file are never re-encoded. A temp file left by a killed writer is removed by the next
writer of the same destination.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robo_reward.data.format import (
    DEMO_PATTERN,
    SCHEMA_VERSION,
    DemoFileError,
    camera_key,
    demo_names,
    open_h5,
    set_attrs,
    validate,
)

FRAME_COMPRESSION = {"compression": "gzip", "compression_opts": 4}  # ~4x on 64 px renders, any HDF5 reads it


@dataclass
class Episode:
    """One demonstration in memory. T steps; frames per camera uint8 (T, H, W, 3)."""

    frames: dict[str, np.ndarray]
    state: np.ndarray  # float32 (T, D)
    actions: np.ndarray  # float32 (T, A)
    rewards: np.ndarray  # float32 (T,)
    dones: np.ndarray  # uint8 (T,)
    success: bool
    source: str
    privileged: dict[str, np.ndarray] = field(default_factory=dict)  # progress (T,), stage (T,)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return len(self.actions)


def _encode(ep: Episode, cameras: list[str], image_size: tuple | None) -> dict[str, np.ndarray]:
    """The datasets of ``ep`` in their stored dtypes, or ValueError naming the key (never an invalid file)."""
    length = len(ep.actions)
    if length == 0:
        raise ValueError("episode has no steps")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow to inf is refused below
        arrays = {
            "actions": (np.asarray(ep.actions).astype(np.float32, copy=False), 2),
            "obs/state": (np.asarray(ep.state).astype(np.float32, copy=False), 2),
            "rewards": (np.asarray(ep.rewards).astype(np.float32, copy=False), 1),
            "dones": (np.asarray(ep.dones), 1),
        }
        for key, dtype in (("progress", np.float32), ("stage", np.int32)):
            if key in ep.privileged:
                arrays[f"privileged/{key}"] = (np.asarray(ep.privileged[key]).astype(dtype, copy=False), 1)
    out = {}
    for key, (array, ndim) in arrays.items():
        if array.ndim != ndim or len(array) != length:
            raise ValueError(f"{key}: expected {ndim}-D with {length} steps, got shape {array.shape}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():  # after the cast: 1e39 is inf in float32
            raise ValueError(f"{key}: NaN or inf (as float32)")
        out[key] = array
    if not np.isin(out["dones"], (0, 1)).all():
        raise ValueError("dones: values must be 0 or 1")
    out["dones"] = out["dones"].astype(np.uint8)
    progress = out.get("privileged/progress")
    if progress is not None and not ((progress >= 0) & (progress <= 1)).all():
        raise ValueError("privileged/progress: values must be in [0, 1]")
    if sorted(ep.frames) != sorted(cameras):
        raise ValueError(f"frames for cameras {sorted(ep.frames)}, the file has {cameras}")
    for camera in cameras:
        frames, key = np.asarray(ep.frames[camera]), f"obs/{camera_key(camera)}"
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or len(frames) != length:
            raise ValueError(f"{key}: expected uint8 ({length}, H, W, 3), got {frames.dtype} {frames.shape}")
        size = tuple(frames.shape[1:3])
        if min(size) < 1 or (image_size is not None and size != image_size):
            raise ValueError(f"{key}: images {size}, the file's are {image_size}")
        image_size = size
        out[key] = frames
    return out


class DemoWriter:
    """Create (or append to) a demo file; use as a context manager or call :meth:`close`.

    On an exception inside the ``with`` block the destination is left exactly as it was.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        task: str,
        instruction: str,
        fps: float,
        cameras: list[str],
        env_args: dict | None = None,
        stage_names: list[str] | None = None,
        append: bool = False,
    ) -> None:
        self.path = Path(path)
        self.cameras = list(cameras)
        if self.path.is_dir():  # found now, not after recording everything into a file that cannot be renamed
            raise DemoFileError(self.path, "is a folder; the output must be a file path (e.g. demos/push.h5)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._image_size: tuple | None = None
        self._closed = False
        if append and self.path.exists():
            existing = validate(self.path)["cameras"]
            if existing != self.cameras:  # refuse before copying: the original is never touched
                raise DemoFileError(self.path, f"has cameras {existing}, cannot append {self.cameras}")
            try:
                shutil.copyfile(self.path, self.tmp)
                self._file = open_h5(self.tmp, "a")
                data = self._file["data"]
                names = demo_names(data)
                self._next = int(DEMO_PATTERN.match(names[-1]).group(1)) + 1 if names else 0
                if names and self.cameras:
                    self._image_size = tuple(data[names[0]][f"obs/{camera_key(self.cameras[0])}"].shape[1:3])
            except BaseException:
                self._abort()
                raise
        else:
            try:  # the file exists from h5py's first call on: a Ctrl-C from there on must remove it
                self._file = h5py.File(self.tmp, "w", libver="latest")
                data = self._file.create_group("data")
                attrs = {
                    "schema_version": SCHEMA_VERSION,
                    "task": task,
                    "instruction": instruction,
                    "fps": float(fps),
                    "cameras": json.dumps(self.cameras),
                    "env_args": json.dumps(env_args or {}),
                    "stage_names": json.dumps(stage_names or []),
                    "total": 0,
                }
                set_attrs(data, attrs)
            except BaseException:
                self._abort()
                raise
            self._next = 0

    @property
    def num_episodes(self) -> int:
        return len(demo_names(self._file["data"]))

    def add(self, episode: Episode) -> str:
        """Write one episode as ``demo_<next>``; returns its name. ValueError (nothing written) if it is invalid."""
        arrays = _encode(episode, self.cameras, self._image_size)
        data = self._file["data"]
        name = f"demo_{self._next}"
        group = data.create_group(name)
        try:
            for key, array in arrays.items():
                if key.startswith("obs/") and key != "obs/state":
                    group.create_dataset(key, data=array, chunks=(1, *array.shape[1:]), **FRAME_COMPRESSION)
                else:
                    group.create_dataset(key, data=array)
            set_attrs(group, episode.attrs)  # first: the fields below win over same-named extra attrs
            fields = {"num_samples": episode.num_samples, "success": bool(episode.success), "source": episode.source}
            set_attrs(group, fields)
        except BaseException:  # e.g. an attribute h5py cannot store: no half-written episode stays behind
            del data[name]
            raise
        data.attrs["total"] = int(data.attrs.get("total", 0)) + episode.num_samples
        if self.cameras:
            self._image_size = tuple(arrays[f"obs/{camera_key(self.cameras[0])}"].shape[1:3])
        self._next += 1
        return name

    def commit(self) -> None:
        """Make everything written so far the destination file, and keep writing (appending)."""
        self._publish()
        shutil.copyfile(self.path, self.tmp)
        self._file = open_h5(self.tmp, "a")

    def close(self) -> Path:
        if not self._closed:
            self._publish()
            self._closed = True
        return self.path

    def _publish(self) -> None:
        self._file.close()
        try:
            publish(self.tmp, self.path)
        except BaseException:  # e.g. the destination became a folder or the disk filled: no temp file stays
            self.tmp.unlink(missing_ok=True)
            raise

    def _abort(self) -> None:
        self._closed = True
        try:
            self._file.close()
        except AttributeError:  # failed before the file was opened
            pass
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


def publish(tmp: Path, path: Path) -> None:
    """Make the finished temporary file ``tmp`` the file ``path``: sync it (the rename never publishes
    data still in flight), rename it over ``path`` (atomic), sync the folder (the rename survives a crash)."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Persist a rename (the directory entry) — best effort: not every filesystem lets a folder be fsynced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> None:
    """Delete temp files of writers to ``path`` whose process is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -4]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a temp file named after a dead writer can be removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
