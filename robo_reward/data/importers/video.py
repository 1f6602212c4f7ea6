"""Import mp4 videos as demos: a folder of per-camera mp4s, or a single mp4, per episode.

Videos carry no robot state, actions or reward, so an episode gets empty float32 (T, 0) state and action
arrays, zero rewards and a done flag on its last step; whether it shows a success comes from
``--success``/``--failure`` (one label for the whole import — split the import to mix them). The
instruction is the only task signal a video has, hence ``--instruction`` is required here.

The helpers shared by every importer live here too, because every importer ends in frames: the common
flags, decoding a (window of a) video with PyAV, resizing, and the all-or-nothing write through
:class:`~robo_reward.data.writer.DemoWriter` (temp file + rename, so a failed import changes nothing).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robo_reward.data.writer import DemoWriter, Episode


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _positive(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _positive(text, int)


def positive_float(text: str) -> float:
    return _positive(text, float)


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    fps_help: str | None = None,
    fps_default=None,
    instruction_required: bool = False,
) -> None:
    """The flags every importer shares."""
    parser.add_argument("--out", required=True, help="demo file to write (replaced atomically unless --append)")
    parser.add_argument("--instruction", required=instruction_required, default="", help="language instruction")
    parser.add_argument("--task", default="imported", help="task name stored in the file (default: imported)")
    parser.add_argument(
        "--res",
        type=positive_int,
        default=None,
        metavar="N",
        help="resize frames to N×N (default: native size, which must then be the same everywhere)",
    )
    if fps_help:
        parser.add_argument("--fps", type=positive_float, default=fps_default, help=fps_help)
    parser.add_argument("--append", action="store_true", help="add to an existing file instead of replacing it")
    outcome = parser.add_mutually_exclusive_group()
    outcome.add_argument("--success", dest="success", action="store_true", default=True, help="successes (default)")
    outcome.add_argument("--failure", dest="success", action="store_false", help="the episodes are failures")


def resize(image: np.ndarray, res: int | None) -> np.ndarray:
    """uint8 (H, W, 3) → (res, res, 3); Pillow filters properly when shrinking."""
    if res is None or image.shape[:2] == (res, res):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((res, res), Image.Resampling.BILINEAR))


def probe_fps(path: Path) -> float:
    """The video's frame rate from its metadata, without decoding (also catches unreadable files early)."""
    import av

    if not path.is_file():
        raise ValueError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"{path}: cannot read video ({first_line(exc)})") from None
    if not rate:
        raise ValueError(f"{path}: video has no frame rate; pass --fps")
    return float(rate)


def decode_video(path: Path, res: int | None = None, start: float = 0.0, stop: float = math.inf):
    """Frames of the first video stream shown at ``start <= t < stop``: uint8 (T, H, W, 3) and times (T,) in s.

    Seeks to the keyframe before ``start``, so a window of a long file (LeRobot packs many episodes into
    one mp4) costs only its own decoding.
    """
    import av

    if not path.is_file():
        raise ValueError(f"{path}: no such video file")
    frames, times = [], []
    size = {"width": res, "height": res} if res else {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else len(times) / float(stream.average_rate or 1)
                if t < start:
                    continue
                if t >= stop:
                    break
                frames.append(frame.to_ndarray(format="rgb24", **size))
                times.append(t)
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"{path}: cannot decode video ({first_line(exc)})") from None
    if not frames:
        window = "" if stop == math.inf else f" between {start:.3f} s and {stop:.3f} s"
        raise ValueError(f"{path}: no video frames{window}")
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def episode_without_robot(frames: dict[str, np.ndarray], success: bool, source: str) -> Episode:
    """An episode that only has frames: (T, 0) state and actions, zero rewards, done at the end."""
    length = len(next(iter(frames.values())))
    dones = np.zeros(length, np.uint8)
    dones[-1] = 1
    empty = np.zeros((length, 0), np.float32)
    return Episode(
        frames=frames,
        state=empty,
        actions=empty.copy(),
        rewards=np.zeros(length, np.float32),
        dones=dones,
        success=success,
        source=source,
    )


def _existing_size(out: Path, fps: float) -> tuple[int, int] | None:
    """When appending: the file's frame size, after checking its frame rate matches."""
    from robo_reward.data.reader import DemoReader

    with DemoReader(out) as reader:
        if not math.isclose(reader.fps, fps, rel_tol=1e-6):
            raise ValueError(f"{out}: holds {reader.fps:g} fps episodes, cannot append {fps:g} fps ones")
        if len(reader) and reader.cameras:
            return tuple(reader.frames(0, reader.cameras[0], 0, 1).shape[1:3])
    return None


def write_episodes(
    args: argparse.Namespace,
    episodes: Iterable[Episode],
    *,
    fps: float,
    cameras: list[str],
    instruction: str,
    notes: list[str] | None = None,
) -> dict:
    """Write ``episodes`` (may be lazy) into ``args.out``: all of them, or — on any error — nothing."""
    out = Path(args.out)
    size = _existing_size(out, fps) if args.append and out.exists() else None
    count = frames = 0
    with DemoWriter(out, task=args.task, instruction=instruction, fps=fps, cameras=cameras, append=args.append) as w:
        for episode in episodes:
            for camera, video in episode.frames.items():
                if size is None:
                    size = video.shape[1:3]
                elif video.shape[1:3] != size:
                    where, (height, width) = episode.source.split(":", 1)[-1], video.shape[1:3]
                    raise ValueError(
                        f"{where}: camera {camera!r} has {width}x{height} frames, others {size[1]}x{size[0]}; "
                        "pass --res N to resize all to N×N"
                    )
            w.add(episode)
            count, frames = count + 1, frames + episode.num_samples
        if count == 0:
            raise ValueError(f"{out}: nothing to import")
    return {
        "file": str(out),
        "episodes": count,
        "frames": frames,
        "cameras": cameras,
        "fps": fps,
        "image_size": list(size) if size else None,
        "notes": list(notes or []),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="episodes: a folder of <camera>.mp4 files, or one mp4")
    parser.add_argument("--camera", default="front", help="camera name for single-mp4 episodes (default: front)")
    add_common_arguments(
        parser,
        instruction_required=True,
        fps_help="resample every video to this rate (default: the videos' own, which must agree)",
    )


def _camera_files(path: Path, camera: str) -> dict[str, Path]:
    if path.is_dir():
        files = sorted(path.glob("*.mp4"))
        if not files:
            raise ValueError(f"{path}: folder holds no .mp4 files")
        return {file.stem: file for file in files}
    if path.is_file():
        return {camera: path}
    raise ValueError(f"{path}: no such file or folder")


def _load(path: Path, files: dict[str, Path], args, notes: list[str]) -> Episode:
    decoded = {camera: decode_video(files[camera], args.res) for camera in sorted(files)}
    counts = {camera: len(frames) for camera, (frames, _) in decoded.items()}
    if args.fps:  # one clock for every camera: each tick shows the latest frame at or before it
        end = min(times[-1] - times[0] for _, times in decoded.values())
        ticks = np.arange(int(end * args.fps + 1e-6) + 1) / args.fps
        frames = {cam: f[np.searchsorted(t - t[0], ticks + 1e-6, side="right") - 1] for cam, (f, t) in decoded.items()}
    else:
        length = min(counts.values())
        frames = {camera: f[:length] for camera, (f, _) in decoded.items()}
    if len(set(counts.values())) > 1:
        notes.append(f"{path}: cameras have {counts} frames; trimmed to {len(next(iter(frames.values())))}")
    return episode_without_robot(frames, args.success, f"video:{path}")


def run(args: argparse.Namespace) -> dict:
    inputs = [Path(p) for p in args.inputs]
    episodes = [_camera_files(path, args.camera) for path in inputs]
    cameras = sorted(episodes[0])
    for path, files in zip(inputs, episodes, strict=True):
        if sorted(files) != cameras:
            raise ValueError(f"{path}: cameras {sorted(files)} differ from {cameras} of {inputs[0]}")
    fps = args.fps
    rates = {file: probe_fps(file) for files in episodes for file in files.values()}
    if not fps:
        fps = next(iter(rates.values()))
        for file, rate in rates.items():
            if not math.isclose(rate, fps, rel_tol=1e-3):
                raise ValueError(f"{file}: {rate:g} fps, other videos {fps:g} fps; pass --fps to resample all")
    notes: list[str] = []
    loaded = (_load(path, files, args, notes) for path, files in zip(inputs, episodes, strict=True))
    return write_episodes(args, loaded, fps=fps, cameras=cameras, instruction=args.instruction, notes=notes)
