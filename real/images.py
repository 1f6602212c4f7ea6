"""``sensor_msgs/Image`` payloads → uint8 RGB arrays (H, W, 3), the demo file's frame format.

Shared by the ROS 2 and ROS 1 links; only the encodings cameras commonly publish for colour are read.
"""

from __future__ import annotations

import numpy as np

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


def image_to_rgb(encoding: str, height: int, width: int, step: int, data: bytes) -> np.ndarray:
    """Decode one image; ``ValueError`` (one line) for an encoding or size this does not read."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding)
    if channels is None:
        raise ValueError(f"image encoding {encoding!r} is not read (use one of {', '.join(ENCODINGS)})")
    if step < width * channels or len(data) < step * height:
        raise ValueError(f"image of {len(data)} bytes is too short for {height} x {width} {encoding}")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])
