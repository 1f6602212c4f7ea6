"""Frame batches decoded by low-priority worker processes into a buffer shared with the caller.

The labeller's read path. Inflating a 64 px two-camera frame takes about a third of the CPU time of the
default PRM's forward pass on it (libdeflate; zlib: half), so decoding must not slow the model down.
In threads, the GIL held between the calls caps two decoders at ~1.4x one. Decoders at the model's
priority preempt its intra-op threads, which wait for each other at every layer: the forward pass ran
1.5-2x slower next to them (DataLoader workers, measured with ``robo-reward bench label``). Processes
under ``SCHED_IDLE`` take only the CPU the model leaves idle, and all of it while the caller waits for a
batch. (libgomp's threads spin for ~15 ms after every parallel region by default, which leaves no idle
CPU at all: ``robo_reward`` sets ``GOMP_SPINCOUNT`` lower.)

Frames of our own layout (one gzip chunk per frame) are read with ``os.pread`` at the chunk's file offset
and inflated by libdeflate straight into the shared buffer; any other layout goes through h5py.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
from pathlib import Path

import h5py
import numpy as np

from robo_reward.data.format import DemoFileError, camera_key, first_line
from robo_reward.data.reader import inflate_frame, is_frame_chunked_gzip


class FrameBatches:
    """Decode ``(demo, start, stop)`` windows of ``cameras`` into slots of a shared
    (slots, max_frames, V, H, W, 3) uint8 buffer: ``submit(slot, segments)`` returns at once,
    ``result(slot)`` waits and returns the filled (F, V, H, W, 3) view. Use as a context manager."""

    def __init__(self, path: str | Path, cameras, frame_shape, max_frames: int, slots: int = 2,
                 workers: int | None = None, idle: bool = True) -> None:  # fmt: skip
        self.path, self.cameras = Path(path), list(cameras)
        self.shape = (slots, max_frames, len(self.cameras), *frame_shape)
        size = int(np.prod(self.shape))
        self._buffer = mmap.mmap(-1, max(1, size))  # anonymous and shared: forked workers write into it
        self.frames = np.frombuffer(self._buffer, np.uint8, count=size).reshape(self.shape)
        self._pending: dict[int, int] = {}
        mp.active_children()  # reap the workers of earlier instances
        self._conns, self._procs = [], []
        context = mp.get_context("fork")  # workers need only this module's globals; no re-import
        for _ in range(workers or os.cpu_count() or 1):
            parent, child = context.Pipe()
            proc = context.Process(target=_work, args=(str(self.path), self._buffer, self.shape, child, idle),
                                   daemon=True, name="robo-reward-inflate")  # fmt: skip
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def submit(self, slot: int, segments) -> None:
        """Start decoding ``segments`` [(demo name, start, stop), ...] into ``slot``."""
        if slot in self._pending:
            raise RuntimeError(f"slot {slot} is still being decoded")
        pieces = [(demo, v, camera_key(cam), start, stop, row)
                  for demo, start, stop, row in _rows(segments) for v, cam in enumerate(self.cameras)]  # fmt: skip
        total = sum(stop - start for _, start, stop in segments)
        if total > self.shape[1]:
            raise ValueError(f"{total} frames do not fit a slot of {self.shape[1]}")
        shares = _split(pieces, len(self._conns))
        for conn, share in zip(self._conns, shares, strict=True):
            conn.send((slot, share))
        self._pending[slot] = total

    def result(self, slot: int) -> np.ndarray:
        total = self._pending.pop(slot)
        errors = []
        for conn, proc in zip(self._conns, self._procs, strict=True):
            try:
                reply = conn.recv()
            except EOFError:
                raise RuntimeError(f"frame decoder process {proc.pid} died (exit code {proc.exitcode})") from None
            if reply is not None:
                errors.append(reply)
        if errors:
            reason, demo, key = errors[0]
            raise DemoFileError(self.path, reason, demo, key)
        return self.frames[slot, :total]

    def close(self, wait: bool = False) -> None:
        """Tell the workers to exit. Without ``wait`` their teardown (~20 ms each, a forked copy of this
        process's page tables) overlaps the caller's next work; they are reaped by the next
        :class:`FrameBatches` or at exit."""
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for proc in self._procs if wait else ():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._conns, self._procs = [], []
        self._buffer = self.frames = None  # unmapped when the last view handed out is gone

    def __enter__(self) -> FrameBatches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rows(segments):
    row = 0
    for demo, start, stop in segments:
        yield demo, start, stop, row
        row += stop - start


def _split(pieces: list, parts: int) -> list[list]:
    """Cut the frames of ``pieces`` into ``parts`` contiguous shares of equal size (pieces may be split)."""
    total = sum(stop - start for _, _, _, start, stop, _ in pieces)
    quota = -(-total // parts) if total else 0
    shares, current, room = [], [], quota
    for demo, v, key, start, stop, row in pieces:
        while start < stop:
            take = min(room, stop - start)
            current.append((demo, v, key, start, start + take, row))
            start, row, room = start + take, row + take, room - take
            if room == 0 and len(shares) < parts - 1:
                shares.append(current)
                current, room = [], quota
    shares.append(current)
    return shares + [[] for _ in range(parts - len(shares))]


def _work(path: str, buffer: mmap.mmap, shape: tuple, conn, idle: bool) -> None:
    """Worker loop: decode each share it is sent, reply None or (reason, demo, key)."""
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # not allowed (some containers): the lowest nice level is nearly as good
            os.nice(19)
    slot_bytes = int(np.prod(shape[1:]))
    views, frame_bytes = shape[2], int(np.prod(shape[3:]))
    target = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY)
    with h5py.File(path, "r") as file:  # opened after the fork: no HDF5 handle crosses it
        index = _ChunkIndex(file)
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the caller is gone
                break
            if message is None:
                break
            slot, share = message
            reply = None
            try:
                for demo, v, key, start, stop, row in share:
                    ds = index.dataset(demo, key, stop, shape[3:])
                    first = slot * slot_bytes + (row * views + v) * frame_bytes
                    positions = range(first, first + (stop - start) * views * frame_bytes, views * frame_bytes)
                    if is_frame_chunked_gzip(ds):
                        _inflate(fd, index.table(ds), start, target, positions, frame_bytes)
                    else:
                        for pos, frame in zip(positions, ds[start:stop], strict=True):
                            target[pos : pos + frame_bytes] = frame.tobytes()
            except _Bad as exc:
                reply = (str(exc), demo, f"obs/{key}")
            except Exception as exc:  # h5py and OS errors: name where they happened
                reply = (first_line(exc), demo, f"obs/{key}")
            try:
                conn.send(reply)
            except OSError:  # the caller is gone (killed): nothing left to do
                break
    os.close(fd)


class _Bad(Exception):
    pass


class _ChunkIndex:
    """Datasets and their chunk tables (file offset, size, filter mask per frame), the last one cached:
    a batch takes an episode's frames in one or two pieces."""

    def __init__(self, file: h5py.File) -> None:
        self.file, self.base = file, file.userblock_size
        self._name: str | None = None
        self._table: list = []

    def dataset(self, demo: str, key: str, stop: int, frame_shape) -> h5py.Dataset:
        ds = self.file.get(f"data/{demo}/obs/{key}")
        if not isinstance(ds, h5py.Dataset):
            raise _Bad("missing")
        if ds.dtype != np.uint8 or ds.ndim != 4 or tuple(ds.shape[1:]) != tuple(frame_shape) or ds.shape[0] < stop:
            raise _Bad(f"expected uint8 (>={stop}, {', '.join(map(str, frame_shape))}), got {ds.dtype} {ds.shape}")
        return ds

    def table(self, ds: h5py.Dataset) -> list:
        if ds.name != self._name:
            table: list = [None] * ds.shape[0]

            def visit(info) -> None:
                table[info.chunk_offset[0]] = (self.base + info.byte_offset, info.size, info.filter_mask)

            ds.id.chunk_iter(visit)
            self._name, self._table = ds.name, table
        return self._table


def _inflate(fd: int, table: list, start: int, target: memoryview, positions: range, frame_bytes: int) -> None:
    """Frames start, start + 1, ... of ``table`` into ``target`` at ``positions`` (byte offsets)."""
    zeros = bytes(frame_bytes)
    for k, pos in enumerate(positions, start):
        entry = table[k]
        if entry is None:  # never written: reads as zeros, as through h5py
            target[pos : pos + frame_bytes] = zeros
            continue
        offset, size, mask = entry
        try:
            target[pos : pos + frame_bytes] = inflate_frame(os.pread(fd, size, offset), mask, frame_bytes, k)
        except OSError as exc:
            raise _Bad(str(exc)) from None
