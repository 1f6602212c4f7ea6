"""``robo-reward label``: write a reward model's progress into a demo file, safely and resumably.

Batches span episodes and are cut at fixed positions of the whole file, so a resumed run computes
exactly what an uninterrupted one would. The work runs in *lanes*, one per core: this process and
forked ones each decode a batch (:mod:`robo_reward.data.inflate`) and then run the model on it with one
torch thread, so one lane decodes while another infers. Two single-threaded forward passes side by side
measured 1.1-1.35x the throughput of one pass on two intra-op threads (which wait for each other at
every layer; ``robo-reward bench label``, ``model_lanes_frames_per_s``), and decoding needs no idle gaps
to hide in. Each finished episode is committed at once as one checksummed record
appended to a journal next to the file (``<file>.labels-<model>``): a killed run loses at most the
episodes in flight and resumes after the last whole record. Meanwhile a copy of the demo file is made in
the background; at the end the labels are added to that copy, which is synced and renamed over the file:
the file is never seen half-written and its frames are never rewritten.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import shutil
import signal
import struct
import threading
import time
import zlib
from collections import deque
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import torch

from robo_reward.data.format import DemoFileError, camera_key, first_line, open_h5
from robo_reward.data.inflate import FrameReader
from robo_reward.data.reader import DemoReader
from robo_reward.data.writer import publish, remove_stale_temps
from robo_reward.models.protocol import RewardModel
from robo_reward.progress import progress_bar as make_progress_bar  # `progress_bar` is the on/off flag here

_MAGIC = b"RRLJ"  # journal header: magic, then a digest of everything the labels depend on
_RECORD = struct.Struct("<IHI")  # crc32 of the body, name bytes, frames; the body: name, float32 progress


def sidecar(path: Path, name: str) -> Path:
    """The journal of finished episodes while ``label`` runs; removed when the labels are in the file."""
    return path.with_name(f"{path.name}.labels-{name}")


def _chunks(lengths: list[int], batch: int) -> list[list[tuple[int, int, int]]]:
    """Fixed batches over the file's frames: each a list of (episode, start, stop) pieces."""
    out, current, room = [], [], batch
    for ep, length in enumerate(lengths):
        start = 0
        while start < length:
            take = min(room, length - start)
            current.append((ep, start, start + take))
            start, room = start + take, room - take
            if room == 0:
                out.append(current)
                current, room = [], batch
    if current:
        out.append(current)
    return out


def _fingerprint(model: RewardModel, cameras: list[str], batch: int, bf16: bool) -> bytes:
    """What the labels depend on: the weights, the cameras, the batch cut, the precision. A journal left
    by another model (or settings) under the same name is not resumed."""
    digest = hashlib.sha256(json.dumps([cameras, batch, bf16]).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def _open_journal(path: Path, fingerprint: bytes) -> tuple[BinaryIO, dict[str, np.ndarray]]:
    """Open and lock the journal for appending; return it and the episodes it holds. A torn last record
    (a kill mid-write) is cut off; a journal of another model or settings starts over; a journal another
    running ``label`` holds is an error (the lock goes with its process, however it ends)."""
    head = _MAGIC + fingerprint
    journal = open(path, "a+b")  # appends always go to the end, wherever truncation left it
    try:
        fcntl.flock(journal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        journal.close()
        raise DemoFileError(path, "another `robo-reward label` run is labelling this file under this name") from None
    journal.seek(0)
    blob = journal.read()
    done: dict[str, np.ndarray] = {}
    pos = len(head) if blob[: len(head)] == head else 0
    while pos and pos + _RECORD.size <= len(blob):
        crc, name_bytes, frames = _RECORD.unpack_from(blob, pos)
        body = blob[pos + _RECORD.size : pos + _RECORD.size + name_bytes + 4 * frames]
        if len(body) != name_bytes + 4 * frames or zlib.crc32(body) != crc:
            break
        done[body[:name_bytes].decode()] = np.frombuffer(body[name_bytes:], dtype=np.float32).copy()
        pos += _RECORD.size + len(body)
    journal.truncate(pos)
    if pos == 0:
        journal.write(head)
        journal.flush()
    return journal, done


def _commit(journal: BinaryIO, demo: str, progress: np.ndarray) -> None:
    """One write per episode: the record is whole or is cut off on resume (no fsync: the labels can
    always be recomputed, and only the final rename touches the user's file)."""
    body = demo.encode() + progress.astype("<f4").tobytes()
    journal.write(_RECORD.pack(zlib.crc32(body), len(demo.encode()), len(progress)) + body)
    journal.flush()


def label(
    path: str | Path,
    model: RewardModel,
    name: str,
    batch: int = 512,
    bf16: bool = False,
    progress_bar: bool = True,
    lanes: int | None = None,
) -> dict:
    """Label every episode of ``path`` with ``model``'s progress under ``/labels/<name>/``. ``lanes``
    (default: torch's thread count) processes, this one among them, each decode and infer whole batches
    with one torch thread. Returns what was labelled and ``lane_seconds``: the lanes' summed time decoding
    and running the model (a resumed run's skipped batches count nothing)."""
    path = Path(path)
    with DemoReader(path) as reader:
        cameras = [c for c in model.cameras if c in reader.cameras]
        if not cameras:
            raise DemoFileError(path, f"has none of the model's cameras {model.cameras}")
        model.task_id(reader.instruction)  # unknown instruction: fail before any work
        frame_shape = _frame_shape(reader, cameras, None if model.resizes else model.image_size)
        instruction, names = reader.instruction, list(reader.names)
        lengths = [reader.num_samples(i) for i in range(len(reader))]
    lanes = max(1, lanes or torch.get_num_threads())
    model.eval()
    run = _Lanes(lanes, path, cameras, frame_shape, batch, model, (instruction, cameras, bf16))
    try:  # the lanes are forked first, so they hold no descriptor of the locked journal
        journal, done = _open_journal(sidecar(path, name), _fingerprint(model, cameras, batch, bf16))
    except BaseException:
        run.join()
        raise
    done = {demo: done[demo] for demo, n in zip(names, lengths, strict=True) if len(done.get(demo, ())) == n}
    resumed = set(done)
    remove_stale_temps(path)
    copy = _BackgroundCopy(path)
    try:
        chunks = [[(names[ep], s, e) for ep, s, e in c] for c in _chunks(lengths, batch)]
        chunks = [c for c in chunks if any(demo not in done for demo, _, _ in c)]
        length = dict(zip(names, lengths, strict=True))
        pending: dict[str, list[np.ndarray]] = {}
        with (
            run,
            make_progress_bar(total=sum(lengths), initial=sum(len(v) for v in done.values()), desc=f"label {name}",
                              unit="frame", disable=not progress_bar) as bar,
        ):  # fmt: skip
            copy.start()  # after the lanes are forked: no thread is running when they are
            for chunk, progress in zip(chunks, run(chunks), strict=True):
                offset = 0
                for demo, s, e in chunk:
                    pending.setdefault(demo, []).append(progress[offset : offset + e - s])
                    offset += e - s
                    if e == length[demo] and demo not in done:
                        done[demo] = np.concatenate(pending.pop(demo)).astype(np.float32)
                        _commit(journal, demo, done[demo])
                    if demo not in resumed:
                        bar.update(e - s)
        journal.close()
        _merge(path, copy.finish(), name, names, done)
    except BaseException:
        journal.close()
        copy.abandon()
        raise
    finally:
        run.join()
    sidecar(path, name).unlink()
    return {"file": str(path), "model": name, "episodes": len(names), "frames": int(sum(lengths)), "lanes": lanes,
            "lane_seconds": {key: round(value, 4) for key, value in run.seconds.items()}}  # fmt: skip


class _Lanes:
    """``run(chunks)`` yields each chunk's progress (numpy) in order. The caller is one lane and
    ``lanes - 1`` forked processes are the others; each lane reads a chunk into a buffer of its own and
    runs the model on it with one torch thread (as a DataLoader worker does). Chunks are handed out in
    order to whichever lane is free; a forked lane has two in flight, so it never waits for the caller.

    Processes, not threads: a decoding thread and an inferring one contend for the GIL at every frame
    (the decode ran 1.7-2.3x slower and the lanes' passes at unequal speeds). A forked lane exits when
    told to (:meth:`close`, then :meth:`join` after the merge) or when the caller is gone."""

    def __init__(
        self, lanes: int, path: Path, cameras, frame_shape, batch: int, model: RewardModel, args: tuple
    ) -> None:
        self._work = _LaneWork(path, cameras, frame_shape, batch, model, args)
        self.seconds = {"decode": 0.0, "forward": 0.0}  # summed over the lanes, for `bench label`
        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)  # this process is a lane too; restored by close()
        # One forward pass on a zero slice, before forking: the kernels torch sets up per input shape on a
        # model's first pass cost a lane's first batch 0.1-0.2 s (twice its usual time); the forked lanes
        # inherit them. Only for a model that names its slice (``infer_frames``, the PRM's 128 frames).
        warm = min(batch, getattr(model, "infer_frames", 0))
        try:
            if warm:
                model.predict(torch.zeros((warm, len(cameras), *frame_shape), dtype=torch.uint8), *args)
        except BaseException:
            torch.set_num_threads(self._threads)
            raise
        context = mp.get_context("fork")  # the model and settings pass by memory, nothing re-imported
        self._conns, self._procs = [], []
        for _ in range(lanes - 1):
            parent, child = context.Pipe()
            proc = context.Process(target=_lane, args=(child, self._work, os.getpid()), daemon=True,
                                   name="robo-reward-label")  # fmt: skip
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def __call__(self, chunks):
        done: dict[int, np.ndarray] = {}
        flight = {conn: deque() for conn in self._conns}
        following = 0

        def feed(conn) -> None:
            nonlocal following
            while len(flight[conn]) < 2 and following < len(chunks):
                conn.send(chunks[following])
                flight[conn].append(following)
                following += 1

        for conn in self._conns:
            feed(conn)
        for k in range(len(chunks)):
            while k not in done:
                for conn in mp.connection.wait([c for c in self._conns if flight[c]], timeout=0) or ():
                    done[flight[conn].popleft()] = self._tally(self._receive(conn))
                    feed(conn)
                if k in done:
                    break
                if following < len(chunks):  # nothing ready: take the next chunk here
                    following += 1
                    done[following - 1] = self._tally(self._work(chunks[following - 1]))
                else:
                    mp.connection.wait([c for c in self._conns if flight[c]])
            yield done.pop(k)

    def _tally(self, result: tuple[np.ndarray, float, float]) -> np.ndarray:
        progress, decode_s, forward_s = result
        self.seconds["decode"] += decode_s
        self.seconds["forward"] += forward_s
        return progress

    def _receive(self, conn) -> tuple[np.ndarray, float, float]:
        try:
            status, value = conn.recv()
        except EOFError:
            proc = self._procs[self._conns.index(conn)]
            raise RuntimeError(f"labelling lane {proc.pid} died (exit code {proc.exitcode})") from None
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        """Tell the forked lanes to exit; their teardown (~20 ms, a copy of this process's page tables)
        overlaps the caller's next work until :meth:`join`."""
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        self._conns = []
        self._work.close()
        if self._threads:
            torch.set_num_threads(self._threads)
            self._threads = 0

    def join(self) -> None:
        """Wait for the forked lanes to be gone: a lane holds copies of this process's descriptors (a
        lock another caller's thread holds, say) for as long as it lives."""
        self.close()
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs = []

    def __enter__(self) -> _Lanes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _LaneWork:
    """One lane's job on a chunk: decode it into the lane's buffer, run the model. The reader and the
    buffer are made on first use, in the process that uses them (no HDF5 handle crosses a fork)."""

    def __init__(self, path: Path, cameras, frame_shape, batch: int, model: RewardModel, args: tuple) -> None:
        self.path, self.cameras, self.frame_shape, self.batch = path, cameras, frame_shape, batch
        self.model, self.args = model, args
        self._reader: FrameReader | None = None

    def __call__(self, chunk) -> tuple[np.ndarray, float, float]:
        """The chunk's progress, and the seconds this lane spent decoding it and running the model on it."""
        if self._reader is None:
            self._reader = FrameReader(self.path, self.cameras, self.frame_shape)
            self._buffer = np.empty((self.batch, len(self.cameras), *self.frame_shape), np.uint8)
        start = time.perf_counter()
        decoded = torch.from_numpy(self._reader.read(chunk, self._buffer))
        decoded_at = time.perf_counter()
        progress = self.model.predict(decoded, *self.args)["progress"].numpy()
        return progress, decoded_at - start, time.perf_counter() - decoded_at

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """End this lane when ``parent`` dies, SIGKILL included. The pipe cannot tell: a lane forked later
    holds a copy of the caller's end, so no EOF arrives. Linux: the kernel's parent-death signal; elsewhere
    a thread that watches ``getppid()``."""
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="label-parent-watch").start()
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _lane(conn, work: _LaneWork, parent: int) -> None:
    """A forked lane's loop: for each chunk it is sent, reply ("ok", progress) or ("error", exception)."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle; it then closes the pipe
    torch.set_num_threads(1)  # before any torch op: the caller's OpenMP threads do not exist here
    while True:
        try:
            chunk = conn.recv()
        except EOFError:  # the caller is gone
            break
        if chunk is None:
            break
        try:
            reply = ("ok", work(chunk))
        except Exception as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)
        except OSError:  # the caller is gone (killed)
            break
        except Exception as exc:  # an exception that does not pickle
            conn.send(("error", RuntimeError(f"labelling lane: {first_line(exc)}")))
    work.close()


def _frame_shape(reader: DemoReader, cameras: list[str], size: int | None) -> tuple[int, int, int]:
    """The file's (H, W, 3), from its first episode, checked against a model with a fixed input ``size``
    before any work (the lanes check every episode as they read it; a VL model resizes any size)."""
    if not len(reader):
        return (size or 1, size or 1, 3)
    shapes = {}
    for camera in cameras:
        key = f"obs/{camera_key(camera)}"
        ds = reader.group(0).get(key)
        expected = f"uint8 (T, {size}, {size}, 3) for the model" if size else "uint8 (T, H, W, 3)"
        if ds is None or ds.dtype != np.uint8 or ds.ndim != 4 or (size and ds.shape[1:] != (size, size, 3)):
            got = "missing" if ds is None else f"{ds.dtype} {ds.shape}"
            raise DemoFileError(reader.path, f"expected {expected}, got {got}", reader.names[0], key)
        shapes[camera] = tuple(ds.shape[1:])
    if len(set(shapes.values())) > 1:
        reason = f"cameras differ in image size {shapes}; labelling needs one size"
        raise DemoFileError(reader.path, reason, reader.names[0])
    return next(iter(shapes.values()))


class _BackgroundCopy:
    """A synced copy of the demo file, made while the model runs (a kernel-side copy: the GIL is free)."""

    def __init__(self, path: Path) -> None:
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._path, self._error = path, None
        self._thread = threading.Thread(target=self._run, daemon=True, name="label-copy")

    def _run(self) -> None:
        try:
            shutil.copyfile(self._path, self.tmp)
            with open(self.tmp, "rb") as handle:
                os.fsync(handle.fileno())  # the bulk of the final sync, off the critical path
        except BaseException as exc:
            self._error = exc

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> Path:
        self._thread.join()
        if self._error is not None:
            raise DemoFileError(self._path, f"cannot copy it for writing: {self._error}")
        return self.tmp

    def abandon(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()
        self.tmp.unlink(missing_ok=True)


def _merge(path: Path, tmp: Path, name: str, names: list[str], labels: dict[str, np.ndarray]) -> None:
    """Add the labels to the copy ``tmp`` of ``path``, sync it and rename it over ``path``. Datasets are
    made with h5py's low-level calls (half the time of ``create_dataset`` for a file of small episodes)."""
    with open_h5(tmp, "a") as f:
        if f"labels/{name}" in f:
            del f[f"labels/{name}"]
        group = f.require_group(f"labels/{name}")
        intermediate = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        intermediate.set_create_intermediate_group(True)
        for demo in names:
            values = np.ascontiguousarray(labels[demo], dtype="<f4")
            space = h5py.h5s.create_simple(values.shape)
            dataset = h5py.h5d.create(group.id, f"{demo}/progress".encode(), h5py.h5t.IEEE_F32LE, space,
                                      lcpl=intermediate)  # fmt: skip
            dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, values)
    publish(tmp, path)
