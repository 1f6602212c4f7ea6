"""Reading demo files lazily: episodes, frame windows, and a torch Dataset for frame/clip sampling.

Nothing is loaded until asked for; a window of frames reads only its own chunks (one per frame).
Files are opened read-only, so reading can never change them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

import deflate
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from robo_reward.data.format import (
    DemoFileError,
    camera_key,
    decode_attr,
    demo_names,
    first_line,
    open_h5,
    read_cameras,
    reading,
)
from robo_reward.data.writer import Episode


class DemoReader:
    """A demo file opened read-only. ``len(reader)`` episodes, addressed by position 0..len-1."""

    def __init__(self, source: str | Path | IO[bytes]) -> None:
        on_disk = isinstance(source, str | Path)
        self.path = source if on_disk else getattr(source, "name", "<file object>")
        self._size_path = source if on_disk else None
        if on_disk:
            self._file = open_h5(source)
        else:
            try:
                self._file = h5py.File(source, "r")
            except Exception as exc:
                reason = f"not a readable HDF5 file (truncated or corrupt?): {first_line(exc)}"
                raise DemoFileError(self.path, reason) from None
        try:
            with reading(self.path, key="/data"):
                if "data" not in self._file:
                    raise DemoFileError(self.path, "missing group", key="/data")
                self._data = self._file["data"]
                attrs = self._data.attrs
                self.task = decode_attr(attrs.get("task", ""))
                self.instruction = decode_attr(attrs.get("instruction", ""))
                self.fps = float(attrs.get("fps", 0.0))
                self.cameras = read_cameras(self._data)
                self.env_args = json.loads(decode_attr(attrs.get("env_args", "{}")))
                self.stage_names = json.loads(decode_attr(attrs.get("stage_names", "[]")))
                self.names = demo_names(self._data)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.names)

    def group(self, index: int) -> h5py.Group:
        return self._data[self.names[index]]

    def num_samples(self, index: int) -> int:
        return int(self.group(index)["actions"].shape[0])

    def success(self, index: int) -> bool:
        return bool(self.group(index).attrs["success"])

    def frames(self, index: int, camera: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """uint8 (stop - start, H, W, 3) of one camera; reads only those frames' chunks."""
        ds = self.group(index)[f"obs/{camera_key(camera)}"]
        if is_frame_chunked_gzip(ds):
            return _read_gzip_frames(ds, *slice(start, stop).indices(ds.shape[0])[:2])
        return ds[start:stop]

    def multiview(self, index: int, start: int = 0, stop: int | None = None, cameras=None) -> np.ndarray:
        """uint8 (T, V, H, W, 3) for ``cameras`` (default: all of the file's)."""
        cams = cameras or self.cameras
        return np.stack([self.frames(index, cam, start, stop) for cam in cams], axis=1)

    def privileged(self, index: int, key: str) -> np.ndarray | None:
        group = self.group(index)
        return group[f"privileged/{key}"][()] if f"privileged/{key}" in group else None

    def label_models(self) -> list[str]:
        return sorted(self._file["labels"]) if "labels" in self._file else []

    def labels(self, model: str, index: int) -> np.ndarray | None:
        key = f"labels/{model}/{self.names[index]}/progress"
        return self._file[key][()] if key in self._file else None

    def episode(self, index: int) -> Episode:
        group = self.group(index)
        privileged = {key: group[f"privileged/{key}"][()] for key in group.get("privileged", {})}
        skip = {"num_samples", "success", "source"}
        return Episode(
            frames={cam: group[f"obs/{camera_key(cam)}"][()] for cam in self.cameras},
            state=group["obs/state"][()],
            actions=group["actions"][()],
            rewards=group["rewards"][()],
            dones=group["dones"][()],
            success=bool(group.attrs["success"]),
            source=decode_attr(group.attrs["source"]),
            privileged=privileged,
            attrs={key: decode_attr(value) for key, value in group.attrs.items() if key not in skip},
        )

    def summary(self) -> dict:
        lengths = [self.num_samples(i) for i in range(len(self))]
        shape = list(self.frames(0, self.cameras[0], 0, 1).shape[1:3]) if len(self) and self.cameras else None
        return {
            "file": str(self.path),
            "task": self.task,
            "instruction": self.instruction,
            "episodes": len(self),
            "frames": int(sum(lengths)),
            "cameras": self.cameras,
            "image_size": shape,
            "fps": self.fps,
            "success_rate": float(np.mean([self.success(i) for i in range(len(self))])) if len(self) else None,
            "mean_length": float(np.mean(lengths)) if lengths else None,
            "labels": self.label_models(),
            "size_bytes": os.path.getsize(self._size_path) if self._size_path is not None else None,
        }

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DemoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_frame_chunked_gzip(ds: h5py.Dataset | h5py.h5d.DatasetID) -> bool:
    """The layout our writer produces: one gzip chunk per frame and no other filter (one look at the
    creation properties: h5py's properties fetch them once each)."""
    dsid = ds.id if isinstance(ds, h5py.Dataset) else ds
    plist = dsid.get_create_plist()
    return (
        plist.get_layout() == h5py.h5d.CHUNKED
        and plist.get_chunk() == (1, *dsid.shape[1:])
        and plist.get_nfilters() == 1
        and plist.get_filter(0)[0] == h5py.h5z.FILTER_DEFLATE
    )


def _read_gzip_frames(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Read raw chunks and inflate them with libdeflate: ~3x faster than h5py's zlib filter, and it
    releases the GIL while h5py's filter pipeline does not. Frames not written yet (no chunk) read as
    zeros, as h5py would return them."""
    out = np.zeros((max(0, stop - start), *ds.shape[1:]), dtype=np.uint8)
    frame_bytes = out[0].nbytes if len(out) else 0
    for k in range(start, stop):
        try:
            mask, raw = ds.id.read_direct_chunk((k, 0, 0, 0))
        except (KeyError, OSError):
            continue
        out[k - start] = np.frombuffer(inflate_frame(raw, mask, frame_bytes, k), dtype=np.uint8).reshape(ds.shape[1:])
    return out


def inflate_frame(raw: bytes, mask: int, frame_bytes: int, index: int) -> bytes:
    """One frame's chunk as stored (``mask`` 0: deflated) → its ``frame_bytes`` raw bytes, or OSError."""
    try:
        data = deflate.zlib_decompress(raw, frame_bytes) if mask == 0 else raw
    except deflate.DeflateError as exc:
        raise OSError(f"frame {index}: corrupt compressed chunk ({exc})") from None
    if len(data) != frame_bytes:
        raise OSError(f"frame {index}: chunk holds {len(data)} bytes, expected {frame_bytes}")
    return data


class DemoClipDataset(Dataset):
    """Clips of ``clip_len`` frames (every ``stride``-th) from every episode, multi-view.

    Item: ``frames`` uint8 (clip_len, V, H, W, 3), ``time`` float32 (clip_len,) the frames' time
    normalised to [0, 1] within the episode, ``episode`` and ``start`` indices, ``success`` bool, and
    ``progress`` float32 (clip_len,) when the file holds privileged progress. The HDF5 file is opened
    lazily in each worker process (h5py handles must not cross a fork).
    """

    def __init__(self, path: str | Path, clip_len: int = 1, stride: int = 1, cameras=None) -> None:
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len} and {stride}")
        self.path, self.clip_len, self.stride = Path(path), clip_len, stride
        with DemoReader(self.path) as reader:
            self.cameras = list(cameras or reader.cameras)
            self.lengths = [reader.num_samples(i) for i in range(len(reader))]
        span = (clip_len - 1) * stride + 1
        self.index = [(ep, t) for ep, n in enumerate(self.lengths) for t in range(max(0, n - span + 1))]
        self._reader: DemoReader | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        """Pickled (spawned DataLoader workers) without the open file: each process opens its own."""
        return {**self.__dict__, "_reader": None, "_pid": -1}

    def _open(self) -> DemoReader:
        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = DemoReader(self.path), os.getpid()
        return self._reader

    def __getitem__(self, item: int) -> dict:
        reader = self._open()
        episode, start = self.index[item]
        stop = start + (self.clip_len - 1) * self.stride + 1
        frames = reader.multiview(episode, start, stop, self.cameras)[:: self.stride]
        steps = np.arange(start, stop, self.stride)
        out = {
            "frames": torch.from_numpy(frames),
            "time": torch.from_numpy((steps / max(1, self.lengths[episode] - 1)).astype(np.float32)),
            "episode": episode,
            "start": start,
            "success": reader.success(episode),
        }
        group = reader.group(episode)
        if "privileged/progress" in group:
            out["progress"] = torch.from_numpy(group["privileged/progress"][start : stop : self.stride])
        return out
