"""``robo-reward view``: one episode as an mp4 — cameras side by side, labelled, progress curves underneath."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robo_reward.data.format import DemoFileError, reading
from robo_reward.data.reader import DemoReader
from robo_reward.video import FAILURE_COLOUR, SUCCESS_COLOUR, VIEW_PX, labelled_tile, legend_bar, write_mp4

CURVE_COLOURS = [(255, 200, 0), (0, 200, 255), (255, 80, 200), (120, 255, 120)]
PRIVILEGED_COLOUR = (200, 200, 200)
STRIP_PX = 80  # height of the progress plot under the cameras


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


def view(path: str | Path, demo: int, out: str | Path, view_px: int = VIEW_PX) -> dict:
    """Write episode ``demo`` of ``path`` to ``out``; returns what was drawn.

    Each camera ``view_px`` high and named, the step and the episode's outcome in the corner; under them
    the progress curves (a reward model's labels against the simulator's privileged progress) and a legend.
    """
    with DemoReader(path) as reader:
        if not 0 <= demo < len(reader):
            raise DemoFileError(path, f"no episode {demo}; the file has {len(reader)} (0..{len(reader) - 1})")
        if not reader.cameras:
            raise DemoFileError(path, "has no cameras: nothing to show", key="/data@cameras")
        with reading(path, reader.names[demo]):  # a damaged file: one line naming the episode, not a traceback
            frames = reader.multiview(demo)  # (T, V, H, W, 3)
            curves, names, legend = [], [], []
            for k, model in enumerate(reader.label_models()):
                labels = reader.labels(model, demo)
                if labels is not None:
                    colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
                    curves.append((labels, colour))
                    names.append(f"labels/{model}")
                    legend.append((f"model {model} (labels/{model})", colour))
            privileged = reader.privileged(demo, "progress")
            if privileged is not None:
                curves.append((privileged, PRIVILEGED_COLOUR))
                names.append("privileged/progress")
                legend.append(("privileged progress (simulator truth)", PRIVILEGED_COLOUR))
            success, name, cameras = reader.success(demo), reader.names[demo], reader.cameras
        fps = reader.fps
    outcome = ("success", SUCCESS_COLOUR) if success else ("failure", FAILURE_COLOUR)
    images, bar = [], None
    for t in range(len(frames)):
        status = [(f"step {t}/{len(frames) - 1} · episode {outcome[0]}", outcome[1])]
        tiled = labelled_tile(frames[t][None], cameras, [name], status, view_px)
        if curves:
            bar = bar if bar is not None else legend_bar(tiled.shape[1], legend, "(progress, 0 to 1)")
            tiled = np.concatenate([tiled, progress_strip(curves, t, tiled.shape[1], STRIP_PX), bar], axis=0)
        images.append(tiled)
    write_mp4(out, images, fps=fps)
    return {"out": str(out), "frames": len(frames), "curves": names}
