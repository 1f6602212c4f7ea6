"""Frame windows of several cameras decoded into a caller's array, safely from several threads at once.

The labeller's read path: each of its lanes (a process with one intra-op torch thread, see
``robo_reward.label``) decodes a batch with a reader of its own and then runs the model on it. Frames of our
own layout (one gzip chunk per frame) are read with one ``os.pread`` per episode and camera, at the chunk
table's file offsets, and inflated by libdeflate, which releases the GIL; any other layout goes through
h5py. h5py calls (chunk tables, other layouts) are serialised by one lock: h5py is not safe to enter from
two threads.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import h5py
import numpy as np

from robo_reward.data.format import DemoFileError, camera_key, first_line, open_h5
from robo_reward.data.reader import inflate_frame, is_frame_chunked_gzip

# A window whose chunks are scattered over more than this many times their own size is read chunk by chunk.
_MAX_SPAN = 4


class FrameReader:
    """``read(segments, out)`` decodes ``[(demo, start, stop), ...]`` of ``cameras`` into ``out``
    (≥ F, V, H, W, 3) uint8 and returns the filled ``out[:F]``. Thread-safe. Use as a context manager.

    A missing, misshapen or damaged window raises :class:`DemoFileError` naming the file, the demo, the
    key and, for a damaged chunk, the frame; the reader stays usable."""

    def __init__(self, path: str | Path, cameras, frame_shape) -> None:
        self.path, self.cameras, self.frame_shape = Path(path), [camera_key(c) for c in cameras], tuple(frame_shape)
        self.frame_bytes = int(np.prod(self.frame_shape))
        self._file = open_h5(self.path, "r")
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, str], tuple[list | None, int]] = {}

    def read(self, segments, out: np.ndarray) -> np.ndarray:
        views = len(self.cameras)
        if out.dtype != np.uint8 or out.shape[1:] != (views, *self.frame_shape) or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint8 (F, {views}, {', '.join(map(str, self.frame_shape))})")
        total = sum(stop - start for _, start, stop in segments)
        if total > len(out):
            raise ValueError(f"{total} frames do not fit an array of {len(out)}")
        flat = memoryview(out.reshape(-1))
        row = 0
        for demo, start, stop in segments:
            for v, key in enumerate(self.cameras):
                first = (row * views + v) * self.frame_bytes
                positions = range(first, first + (stop - start) * views * self.frame_bytes, views * self.frame_bytes)
                try:
                    table = self._table(demo, key, stop)
                    if table is None:
                        with self._lock:
                            frames = self._file[f"data/{demo}/obs/{key}"][start:stop]
                        out[row : row + stop - start, v] = frames
                    else:
                        self._inflate(table, start, stop, flat, positions)
                except _Bad as exc:
                    raise DemoFileError(self.path, str(exc), demo, f"obs/{key}") from None
                except Exception as exc:  # h5py and OS errors: name where they happened
                    raise DemoFileError(self.path, first_line(exc), demo, f"obs/{key}") from None
            row += stop - start
        return out[:row]

    def _table(self, demo: str, key: str, stop: int) -> list | None:
        """The chunk table of one episode's camera (file offset, size, filter mask per frame; None for a
        frame never written), or None for a layout h5py must read. Checked and built once."""
        entry = self._tables.get((demo, key))
        if entry is None:
            with self._lock:  # h5py's low-level calls: ~100 us a table, half the high-level ones' time
                try:
                    dsid = h5py.h5d.open(self._file.id, f"data/{demo}/obs/{key}".encode())
                except KeyError:
                    raise _Bad("missing") from None
                if dsid.dtype != np.uint8 or len(dsid.shape) != 4 or tuple(dsid.shape[1:]) != self.frame_shape:
                    shape = ", ".join(map(str, self.frame_shape))
                    raise _Bad(f"expected uint8 (T, {shape}), got {dsid.dtype} {dsid.shape}")
                table = _chunk_table(dsid, self._file.userblock_size) if is_frame_chunked_gzip(dsid) else None
                entry = self._tables[(demo, key)] = (table, dsid.shape[0])
        table, length = entry
        if length < stop:
            raise _Bad(f"expected at least {stop} frames, got {length}")
        return table

    def _inflate(self, table: list, start: int, stop: int, target: memoryview, positions: range) -> None:
        entries = table[start:stop]
        written = [e for e in entries if e is not None]
        lo = min((e[0] for e in written), default=0)
        hi = max((e[0] + e[1] for e in written), default=0)
        whole = hi - lo <= _MAX_SPAN * sum(e[1] for e in written)
        try:
            blob = memoryview(os.pread(self._fd, hi - lo, lo)) if whole else None
            if whole and len(blob) < hi - lo:
                raise _Bad(f"file ends inside the frames' chunks (at byte {lo + len(blob)} of {hi})")
            for k, (entry, pos) in enumerate(zip(entries, positions, strict=True), start):
                if entry is None:  # never written: reads as zeros, as through h5py
                    target[pos : pos + self.frame_bytes] = bytes(self.frame_bytes)
                    continue
                offset, size, mask = entry
                raw = blob[offset - lo : offset - lo + size] if whole else os.pread(self._fd, size, offset)
                target[pos : pos + self.frame_bytes] = inflate_frame(raw, mask, self.frame_bytes, k)
        except OSError as exc:
            raise _Bad(str(exc)) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._file.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Bad(Exception):
    pass


def _chunk_table(dsid: h5py.h5d.DatasetID, base: int) -> list:
    table: list = [None] * dsid.shape[0]

    def visit(info) -> None:
        table[info.chunk_offset[0]] = (base + info.byte_offset, info.size, info.filter_mask)

    dsid.chunk_iter(visit)
    return table
