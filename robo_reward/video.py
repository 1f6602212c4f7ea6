"""Camera frames for people: views resized to a size one can see, labelled (camera, row, step,
success), legends for curves, and mp4 files written atomically (a temp file renamed at the end)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from matplotlib import get_data_path
from PIL import Image, ImageDraw, ImageFont

VIEW_PX = 256  # pixels per camera view in every video this package writes
FONT_FILE = Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"  # shipped with matplotlib; has Φ
SUCCESS_COLOUR = (120, 255, 120)
FAILURE_COLOUR = (255, 120, 120)
TEXT_COLOUR = (255, 255, 255)


def tile_views(frames: np.ndarray) -> np.ndarray:
    """(E, V, H, W, 3) envs × views → one (E·H, V·W, 3) image: a row per env, a column per camera."""
    envs, views, height, width, _ = frames.shape
    return frames.transpose(0, 2, 1, 3, 4).reshape(envs * height, views * width, 3)


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_FILE), size)


def resize_views(frames: np.ndarray, view_px: int = VIEW_PX) -> np.ndarray:
    """(E, V, H, W, 3) uint8 → (E, V, view_px, W·view_px/H, 3): every view ``view_px`` high."""
    envs, views, height, width, _ = frames.shape
    if height == view_px:
        return frames
    new_width = round(width * view_px / height)
    out = np.empty((envs, views, view_px, new_width, 3), dtype=np.uint8)
    for e in range(envs):
        for v in range(views):
            out[e, v] = np.asarray(Image.fromarray(frames[e, v]).resize((new_width, view_px), Image.BILINEAR))
    return out


def labelled_tile(frames: np.ndarray, cameras: tuple[str, ...] | list[str], rows: list[str],
                  status: list[tuple[str, tuple[int, int, int]]], view_px: int = VIEW_PX) -> np.ndarray:  # fmt: skip
    """(E, V, H, W, 3) → one image, a row per env and a column per camera, each view ``view_px`` high with
    ``camera · row`` and that row's status line (e.g. step and successes, in its colour) in its corner."""
    views = resize_views(frames, view_px)
    envs, count, height, width, _ = views.shape
    image = Image.fromarray(tile_views(views))
    draw = ImageDraw.Draw(image, "RGBA")
    face = font(max(11, height // 18))
    for e in range(envs):
        text, colour = status[e]
        for v in range(count):
            x, y = v * width + 4, e * height + 4
            lines = f"{cameras[v]} · {rows[e]}\n{text}"
            box = draw.multiline_textbbox((x, y), lines, font=face)
            draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0, 150))
            draw.multiline_text((x, y), lines, font=face, fill=colour)
    return np.asarray(image)


def legend_bar(width: int, entries: list[tuple[str, tuple[int, int, int]]], note: str = "",
               height: int = 28) -> np.ndarray:  # fmt: skip
    """A (height, width, 3) bar naming each curve next to a swatch of its colour, then ``note``."""
    image = Image.new("RGB", (width, height), (16, 16, 16))
    draw = ImageDraw.Draw(image)
    face = font(13)
    x, top = 6, (height - 14) // 2
    for text, colour in entries:
        draw.rectangle((x, top + 3, x + 14, top + 13), fill=colour)
        draw.text((x + 19, top), text, font=face, fill=(230, 230, 230))
        x += 19 + round(draw.textlength(text, font=face)) + 16
    if note:
        draw.text((x, top), note, font=face, fill=(150, 150, 150))
    return np.asarray(image)


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
