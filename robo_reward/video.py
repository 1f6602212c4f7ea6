"""Writing camera frames to mp4 (imageio + ffmpeg), atomically: a temp file renamed at the end."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def tile_views(frames: np.ndarray) -> np.ndarray:
    """(E, V, H, W, 3) envs × views → one (E·H, V·W, 3) image: a row per env, a column per camera."""
    envs, views, height, width, _ = frames.shape
    return frames.transpose(0, 2, 1, 3, 4).reshape(envs * height, views * width, 3)


def write_mp4(path: str | Path, images: list[np.ndarray], fps: float) -> Path:
    """Encode ``images`` (each (H, W, 3) uint8) as H.264; never leaves a half-written file at ``path``."""
    path = Path(path)
    shapes = {np.shape(image) for image in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(f"{path}: frames must all be (H, W, 3) of one size, got shapes {sorted(shapes)[:4]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets the usual permissions
    try:
        # macro_block_size=1 keeps small frames (e.g. 64 px) at their size instead of padding them.
        with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, quality=8) as writer:
            for image in images:
                writer.append_data(np.asarray(image, dtype=np.uint8))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
