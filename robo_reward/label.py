"""``robo-reward label``: write a reward model's progress into a demo file, safely and resumably.

Batches span episodes and are cut at fixed positions of the whole file, so a resumed run computes
exactly what an uninterrupted one would. Worker processes decode batch k + 1 at low priority while the
model runs on batch k (:mod:`robo_reward.data.inflate`). Each finished episode is committed at once as
one checksummed record appended to a journal next to the file (``<file>.labels-<model>``): a killed run
loses at most the episode being written and resumes after the last whole record. Meanwhile a copy of
the demo file is made in the background; at the end the labels are added to that copy, which is synced
and renamed over the file: the file is never seen half-written and its frames are never rewritten.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import threading
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from robo_reward.data.format import DemoFileError, camera_key, open_h5
from robo_reward.data.inflate import FrameBatches
from robo_reward.data.reader import DemoReader
from robo_reward.data.writer import fsync_dir, remove_stale_temps

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


def _fingerprint(model, cameras: list[str], batch: int, bf16: bool) -> bytes:
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
    if path.is_dir():  # an earlier version's sidecar folder (a file per episode): start over
        shutil.rmtree(path)
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


def label(path: str | Path, model, name: str, batch: int = 512, bf16: bool = False, progress_bar: bool = True) -> dict:
    """Label every episode of ``path`` with ``model``'s progress under ``/labels/<name>/``."""
    path = Path(path)
    with DemoReader(path) as reader:
        cameras = [c for c in model.config.cameras if c in reader.cameras]
        if not cameras:
            raise DemoFileError(path, f"has none of the model's cameras {model.config.cameras}")
        model.task_id(reader.instruction)  # unknown instruction: fail before any work
        frame_shape = _frame_shape(reader, cameras, getattr(model.config, "image_size", None))
        instruction, names = reader.instruction, list(reader.names)
        lengths = [reader.num_samples(i) for i in range(len(reader))]
    journal, done = _open_journal(sidecar(path, name), _fingerprint(model, cameras, batch, bf16))
    done = {demo: done[demo] for demo, n in zip(names, lengths, strict=True) if len(done.get(demo, ())) == n}
    resumed = set(done)
    remove_stale_temps(path)
    copy = _BackgroundCopy(path)
    try:
        chunks = [[(names[ep], s, e) for ep, s, e in c] for c in _chunks(lengths, batch)]
        chunks = [c for c in chunks if any(demo not in done for demo, _, _ in c)]
        length = dict(zip(names, lengths, strict=True))
        pending: dict[str, list[np.ndarray]] = {}
        model.eval()
        with (
            FrameBatches(path, cameras, frame_shape, max_frames=batch) as batches,
            tqdm(total=sum(lengths), initial=sum(len(v) for v in done.values()), desc=f"label {name}",
                 unit="frame", disable=not progress_bar) as bar,
        ):  # fmt: skip
            copy.start()  # after the decoders are forked: no thread is running when they are
            if chunks:
                batches.submit(0, chunks[0])
            for k, chunk in enumerate(chunks):
                frames = batches.result(k % 2)
                if k + 1 < len(chunks):  # decoded in the CPU time the model leaves idle
                    batches.submit((k + 1) % 2, chunks[k + 1])
                with torch.inference_mode():
                    progress = model.predict(torch.from_numpy(frames), instruction, cameras, bf16)["progress"]
                offset = 0
                for demo, s, e in chunk:
                    pending.setdefault(demo, []).append(progress[offset : offset + e - s].numpy())
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
    sidecar(path, name).unlink()
    return {"file": str(path), "model": name, "episodes": len(names), "frames": int(sum(lengths))}


def _frame_shape(reader: DemoReader, cameras: list[str], size: int | None) -> tuple[int, int, int]:
    """The file's (H, W, 3), from its first episode, checked against a model with a fixed input ``size``
    before any work (the decoders check every episode as they read it; a VL model resizes any size)."""
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
    """Add the labels to the copy ``tmp`` of ``path``, sync it and rename it over ``path``."""
    with open_h5(tmp, "a") as f:
        group = f.require_group(f"labels/{name}")
        for demo in names:
            if demo in group:
                del group[demo]
            group.create_dataset(f"{demo}/progress", data=labels[demo])
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
