"""Writing demo files so that a crash never leaves a damaged file in place of a good one.

A :class:`DemoWriter` always works on a temporary file in the destination's folder and renames it over
the destination on :meth:`DemoWriter.commit` / :meth:`DemoWriter.close` (``os.replace`` is atomic on
POSIX). Appending starts from a byte copy of the existing file, so the original stays intact until
the rename; episodes already in the file are never re-encoded. A temp file left by a killed writer is
removed by the next writer of the same destination.
"""

from __future__ import annotations

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
    read_cameras,
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


def _check_episode(ep: Episode, cameras: list[str]) -> None:
    """Refuse an episode that would make an invalid file (ValueError naming the key)."""
    length = ep.num_samples
    if length == 0:
        raise ValueError("episode has no steps")
    expect = {
        "actions": (ep.actions, 2),
        "obs/state": (ep.state, 2),
        "rewards": (ep.rewards, 1),
        "dones": (ep.dones, 1),
    }
    for key, (array, ndim) in expect.items():
        if array.ndim != ndim or len(array) != length:
            raise ValueError(f"{key}: expected {ndim}-D with {length} steps, got shape {array.shape}")
        if key != "dones" and not np.isfinite(array).all():
            raise ValueError(f"{key}: NaN or inf")
    if set(ep.frames) != set(cameras):
        raise ValueError(f"frames for cameras {sorted(ep.frames)}, the file has {cameras}")
    for camera, frames in ep.frames.items():
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or len(frames) != length:
            raise ValueError(f"obs/{camera_key(camera)}: expected uint8 ({length}, H, W, 3), got "
                             f"{frames.dtype} {frames.shape}")  # fmt: skip


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(self.path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        if append and self.path.exists():
            validate(self.path)
            shutil.copyfile(self.path, self.tmp)
            self._file = open_h5(self.tmp, "a")
            data = self._file["data"]
            if read_cameras(data) != self.cameras:
                self._abort()
                raise DemoFileError(self.path, f"has cameras {read_cameras(data)}, cannot append {self.cameras}")
            names = demo_names(data)
            self._next = int(DEMO_PATTERN.match(names[-1]).group(1)) + 1 if names else 0
        else:
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
            data.attrs.update(attrs)
            self._next = 0

    @property
    def num_episodes(self) -> int:
        return len(demo_names(self._file["data"]))

    def add(self, episode: Episode) -> str:
        """Write one episode as ``demo_<next>``; returns its name."""
        _check_episode(episode, self.cameras)
        data = self._file["data"]
        name = f"demo_{self._next}"
        group = data.create_group(name)
        for camera, frames in episode.frames.items():
            group.create_dataset(
                f"obs/{camera_key(camera)}", data=frames, chunks=(1, *frames.shape[1:]), **FRAME_COMPRESSION
            )
        group.create_dataset("obs/state", data=episode.state.astype(np.float32, copy=False))
        group.create_dataset("actions", data=episode.actions.astype(np.float32, copy=False))
        group.create_dataset("rewards", data=episode.rewards.astype(np.float32, copy=False))
        group.create_dataset("dones", data=episode.dones.astype(np.uint8, copy=False))
        if "progress" in episode.privileged:
            group.create_dataset("privileged/progress", data=episode.privileged["progress"].astype(np.float32))
        if "stage" in episode.privileged:
            group.create_dataset("privileged/stage", data=episode.privileged["stage"].astype(np.int32))
        group.attrs.update(
            {"num_samples": episode.num_samples, "success": bool(episode.success), "source": episode.source}
        )
        group.attrs.update(episode.attrs)
        data.attrs["total"] = int(data.attrs["total"]) + episode.num_samples
        self._next += 1
        return name

    def commit(self) -> None:
        """Make everything written so far the destination file, and keep writing (appending)."""
        self._file.close()
        os.replace(self.tmp, self.path)
        shutil.copyfile(self.path, self.tmp)
        self._file = open_h5(self.tmp, "a")

    def close(self) -> Path:
        self._file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def _abort(self) -> None:
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of writers to ``path`` whose process is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -4]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
