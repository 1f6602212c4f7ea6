"""An evaluation video of a policy: every camera of a few envs, labelled, with the potential Φ drawn underneath.

Watching Φ next to the images is how reward hacking shows itself: a curve that climbs while the cube
does not move. Each video frame is the state the policy acts on (before its action), from step 0 to
``steps`` (the state after the last action), so a recording of ``steps`` env steps has ``steps + 1``
frames. Tiles and the curve strip reuse :func:`robo_reward.video.labelled_tile` and
:func:`robo_reward.data.view.progress_strip`, which draw demo videos the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from robo_reward.data.view import CURVE_COLOURS, PRIVILEGED_COLOUR, progress_strip
from robo_reward.video import SUCCESS_COLOUR, TEXT_COLOUR, font, labelled_tile, legend_bar, write_mp4
from sim import BatchedEnv

STRIP_PX = 120  # height of the Φ plot under the tiles
LEGEND_PX = 28  # height of the legend bar under the plot


def record_eval_video(
    env: BatchedEnv,
    act_fn: Callable[[torch.Tensor], torch.Tensor],
    potential_fn: Callable[[BatchedEnv], torch.Tensor | None] | None,
    path: str | Path,
    steps: int,
    envs_shown: int = 2,
    view_px: int = 256,
    potential_label: str = "Φ (shaping potential)",
) -> dict:
    """Run ``act_fn`` on ``env`` for ``steps`` steps and write an mp4 of its first ``envs_shown`` envs.

    ``act_fn(obs float32 (N, obs_dim)) -> actions (N, act_dim)``; ``potential_fn(env) -> float (N,)``
    gives Φ of the envs' current states, or is ``None`` / returns ``None``: then the curves are the
    simulator's privileged progress (truth), which is otherwise drawn in grey for reference. Make the
    env with ``render_size=(view_px, view_px)``; other sizes are rescaled so each view is ``view_px``
    high. Frames: one row per env, one column per camera, each view labelled with camera, env, step
    and that env's successful / finished episodes so far.

    Returns ``{"out", "frames", "success_rate", "curve"}``: ``success_rate`` is the fraction of all N
    envs that finished an episode successfully during the recording; ``curve`` names what was drawn.
    Every frame is kept until the end (the Φ axis spans all values; ``write_mp4`` takes a list): about
    ``steps × envs_shown × cameras × view_px² × 3`` bytes.
    """
    if steps < 1 or envs_shown < 1 or view_px < 16:
        raise ValueError(f"{path}: need steps, envs_shown >= 1 and view_px >= 16; got {steps}, {envs_shown}, {view_px}")
    shown = min(envs_shown, env.num_envs)
    ids = np.arange(shown)
    potential = np.zeros((steps + 1, shown))
    truth = np.zeros((steps + 1, shown))
    finished = np.zeros(env.num_envs, dtype=np.int64)
    succeeded = np.zeros(env.num_envs, dtype=np.int64)
    use_potential: bool | None = None
    tiles = []
    obs = env.observation
    with torch.inference_mode():
        for t in range(steps + 1):
            truth[t] = env.privileged()["progress"][:shown].cpu().numpy()
            values = potential_fn(env) if potential_fn is not None else None
            if use_potential is None:
                use_potential = values is not None
            if use_potential != (values is not None):
                raise ValueError(f"{path}: potential_fn returned None at some steps and Φ at others (step {t})")
            if values is not None:
                potential[t] = torch.as_tensor(values).reshape(-1)[:shown].float().cpu().numpy()
            status = [(f"step {t} · success {succeeded[e]}/{finished[e]}",
                       SUCCESS_COLOUR if succeeded[e] else TEXT_COLOUR) for e in range(shown)]  # fmt: skip
            tiles.append(labelled_tile(env.render(ids).cpu().numpy(), env.cameras, [f"env {e}" for e in range(shown)],
                                       status, view_px))  # fmt: skip
            if t == steps:
                break
            obs, _, terminated, truncated, info = env.step(act_fn(obs))
            done = (terminated | truncated).cpu().numpy()
            finished += done
            succeeded += done & info["success"].cpu().numpy()

    label = potential_label if use_potential else "privileged progress (sim truth)"
    curves = potential if use_potential else truth
    low, high = min(0.0, float(curves.min())), max(1.0, float(curves.max()))
    scaled = [((curves[:, e] - low) / (high - low), CURVE_COLOURS[e % len(CURVE_COLOURS)]) for e in range(shown)]
    if use_potential:  # truth first, so the potential is drawn over it
        scaled = [((truth[:, e] - low) / (high - low), PRIVILEGED_COLOUR) for e in range(shown)] + scaled
    width = tiles[0].shape[1]
    # one sample per pixel column, so progress_strip draws connected lines however few the steps are
    columns = np.linspace(0, steps, width)
    scaled = [(np.interp(columns, np.arange(steps + 1), values), colour) for values, colour in scaled]
    legend = _legend(width, label, shown, bool(use_potential), low, high)
    images = []
    for t, tile in enumerate(tiles):
        column = round(t * (width - 1) / max(1, steps))
        strip = _axis_labels(progress_strip(scaled, column, width, STRIP_PX), low, high)
        images.append(np.concatenate([tile, strip, legend], axis=0))
    write_mp4(path, images, fps=1.0 / env.dt)
    return {
        "out": str(path),
        "frames": len(images),
        "success_rate": float((succeeded > 0).mean()),
        "curve": label,
    }


def _axis_labels(strip: np.ndarray, low: float, high: float) -> np.ndarray:
    """Mark the strip's top and bottom lines with the values they stand for."""
    image = Image.fromarray(strip)
    draw = ImageDraw.Draw(image)
    face = font(11)
    draw.text((4, 2), f"{high:.2f}", font=face, fill=(170, 170, 170))
    draw.text((4, strip.shape[0] - 15), f"{low:.2f}", font=face, fill=(170, 170, 170))
    return np.asarray(image)


def _legend(width: int, label: str, shown: int, with_truth: bool, low: float, high: float) -> np.ndarray:
    """A colour swatch per env for ``label``, grey for privileged progress, and the y range."""
    entries = [(f"{label}, env {e}", CURVE_COLOURS[e % len(CURVE_COLOURS)]) for e in range(shown)]
    if with_truth:
        entries.append(("privileged progress", PRIVILEGED_COLOUR))
    return legend_bar(width, entries, f"(y axis {low:.2f} to {high:.2f})", LEGEND_PX)
