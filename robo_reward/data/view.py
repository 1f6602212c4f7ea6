"""``robo-reward view``: one episode as an mp4 — cameras side by side, progress curves underneath."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robo_reward.data.format import DemoFileError, reading
from robo_reward.data.reader import DemoReader
from robo_reward.video import tile_views, write_mp4

CURVE_COLOURS = [(255, 200, 0), (0, 200, 255), (255, 80, 200), (120, 255, 120)]
PRIVILEGED_COLOUR = (200, 200, 200)


def progress_strip(curves: list[tuple[np.ndarray, tuple]], t: int, width: int, height: int = 40) -> np.ndarray:
    """A (height, width, 3) plot of each curve (values in [0, 1] over the episode) up to step ``t``."""
    strip = np.full((height, width, 3), 24, dtype=np.uint8)
    strip[[0, height - 1], :] = 70  # the 1.0 and 0.0 lines
    for values, colour in curves:
        n = len(values)
        xs = np.linspace(0, width - 1, n).round().astype(int)[: t + 1]
        ys = (height - 1 - np.clip(values[: t + 1], 0.0, 1.0) * (height - 1)).round().astype(int)
        for k in range(len(xs)):  # connect consecutive points with vertical runs
            lo, hi = sorted((ys[k], ys[k - 1] if k else ys[k]))
            strip[lo : hi + 1, xs[k]] = colour
    cursor = round(t / max(1, len(curves[0][0]) - 1) * (width - 1)) if curves else 0
    strip[:, cursor] = np.maximum(strip[:, cursor], 90)
    return strip


def view(path: str | Path, demo: int, out: str | Path, scale: int = 2) -> dict:
    """Write episode ``demo`` of ``path`` to ``out``; returns what was drawn."""
    with DemoReader(path) as reader:
        if not 0 <= demo < len(reader):
            raise DemoFileError(path, f"no episode {demo}; the file has {len(reader)} (0..{len(reader) - 1})")
        if not reader.cameras:
            raise DemoFileError(path, "has no cameras: nothing to show", key="/data@cameras")
        with reading(path, reader.names[demo]):  # a damaged file: one line naming the episode, not a traceback
            frames = reader.multiview(demo)  # (T, V, H, W, 3)
            curves, names = [], []
            for k, model in enumerate(reader.label_models()):
                labels = reader.labels(model, demo)
                if labels is not None:
                    curves.append((labels, CURVE_COLOURS[k % len(CURVE_COLOURS)]))
                    names.append(f"labels/{model}")
            privileged = reader.privileged(demo, "progress")
            if privileged is not None:
                curves.append((privileged, PRIVILEGED_COLOUR))
                names.append("privileged/progress")
        fps = reader.fps
    images = []
    for t in range(len(frames)):
        tiled = tile_views(frames[t : t + 1]).repeat(scale, axis=0).repeat(scale, axis=1)
        if curves:
            tiled = np.concatenate([tiled, progress_strip(curves, t, tiled.shape[1])], axis=0)
        images.append(tiled)
    write_mp4(out, images, fps=fps)
    return {"out": str(out), "frames": len(frames), "curves": names}
