"""``deploy --record``: a robot run as one episode of the demo file format, so real runs become demonstrations.

The layout is the project's demo file (robomimic-compatible; ``robo-reward validate`` checks it)::

    /data                        attrs: schema_version 1, task, instruction, fps, cameras, env_args (json), total
    /data/demo_0/obs/state       float32 (T, D)   the policy's observation, as the robot filled it
    /data/demo_0/obs/<cam>_rgb   uint8 (T, H, W, 3), a chunk per frame, gzip   (with camera topics)
    /data/demo_0/actions         float32 (T, A)   the action the arm executed, in the policy's units
    /data/demo_0/rewards         float32 (T,)     0: a robot measures no task reward
    /data/demo_0/dones           uint8 (T,)       1 at the last step
    /data/demo_0                 attrs: num_samples, success, source

Written here with h5py (``real/`` does not import the training side), into a temporary file renamed into
place, so an interrupted write never leaves half a file under the user's name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1


def camera_name(topic: str) -> str:
    """``/camera/front/image_raw`` → ``camera_front``: a key-safe name for a camera topic."""
    parts = [p for p in topic.strip("/").split("/") if p and p not in ("image_raw", "image", "image_color")]
    return "_".join(parts) or "camera"


def write_episode(
    path: str | Path,
    states: np.ndarray,
    actions: np.ndarray,
    frames: dict[str, np.ndarray],
    success: bool,
    header: dict[str, Any],
) -> Path:
    """Write one episode: ``states`` (T, D), ``actions`` (T, A), ``frames`` camera → uint8 (T, H, W, 3);
    ``header`` has task, instruction, fps, env_args and source. Returns the path."""
    path = Path(path)
    steps = len(states)
    if steps == 0:
        raise ValueError(f"{path}: nothing to record (the policy ran 0 steps)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            _set_attrs(data, {
                "schema_version": SCHEMA_VERSION, "task": header["task"], "instruction": header["instruction"],
                "fps": float(header["fps"]), "cameras": json.dumps(list(frames)),
                "env_args": json.dumps(header["env_args"]), "total": steps,
            })  # fmt: skip
            demo = data.create_group("demo_0")
            demo.create_dataset("obs/state", data=np.asarray(states, dtype=np.float32))
            for camera, images in frames.items():
                demo.create_dataset(f"obs/{camera}_rgb", data=images, chunks=(1, *images.shape[1:]),
                                    compression="gzip", compression_opts=4)  # fmt: skip
            demo.create_dataset("actions", data=np.asarray(actions, dtype=np.float32))
            demo.create_dataset("rewards", data=np.zeros(steps, dtype=np.float32))
            dones = np.zeros(steps, dtype=np.uint8)
            dones[-1] = 1
            demo.create_dataset("dones", data=dones)
            _set_attrs(demo, {"num_samples": steps, "success": bool(success), "source": header["source"]})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _set_attrs(obj: h5py.Group, values: dict[str, Any]) -> None:
    """Strings as fixed-length UTF-8, inside the checksummed object header (as the project's writer does)."""
    for key, value in values.items():
        if isinstance(value, str):
            raw = value.encode()
            value = np.array(raw, dtype=h5py.string_dtype("utf-8", max(1, len(raw))))
        obj.attrs[key] = value
