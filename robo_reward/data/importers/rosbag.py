"""Import ROS 1 (.bag) and ROS 2 (sqlite3 or mcap folder) bags as demos, one episode per bag.

Topics arrive at their own rates, a demo needs one clock: every topic is resampled to ``--fps`` (default
10) by sample and hold on the bag's record timestamps. Ticks run from the latest first-message time to
the earliest last-message time of the used topics, and each tick takes every topic's latest message at
or before it, so nothing is interpolated and nothing from the future leaks in.

- cameras: ``sensor_msgs/Image`` (rgb8, bgr8, mono8, rgba8, bgra8) and ``sensor_msgs/CompressedImage``
  (jpeg, png), chosen with ``--camera name=/topic`` (default: every image topic, named after it);
- ``obs/state``: the ``--joint-topic`` (``sensor_msgs/JointState``) positions, followed by the
  velocities when every used message carries them; joint order is the first message's (names kept in
  the episode's ``joint_names`` attribute);
- ``actions``: absolute joint targets — the *next* tick's joint positions (the last tick repeats its
  own), i.e. where a position-controlled arm was sent; (T, 0) with ``--joint-topic ''``;
- rewards are zero, the last step is done, success comes from ``--success``/``--failure``.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from robo_reward.data.importers.video import add_common_arguments, first_line, resize, write_episodes
from robo_reward.data.writer import Episode

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINTS = "sensor_msgs/msg/JointState"
CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="bags: ROS 1 .bag files or ROS 2 bag folders; one episode each")
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME=/TOPIC",
        help="an image topic and its camera name (repeatable; default: every image topic)",
    )
    parser.add_argument("--joint-topic", default="/joint_states", help="JointState topic ('' for images only)")
    add_common_arguments(parser, fps_help="rate every topic is resampled to (default: 10)", fps_default=10.0)


def _errors() -> tuple[type[BaseException], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error

    return AnyReaderError, Reader1Error, Reader2Error, OSError


def _open(bag: Path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not bag.exists():
        raise ValueError(f"{bag}: no such bag")
    try:  # old ROS 2 bags carry no message definitions: fall back to the standard ones
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except _errors() as exc:
        raise ValueError(f"{bag}: cannot read bag ({first_line(exc)})") from None
    return reader


def _camera_name(topic: str) -> str:
    return topic.strip("/").replace("/", "_") or "camera"


def _cameras(specs: list[str], bag: Path) -> dict[str, str]:
    """camera name → topic, from ``--camera`` or else every image topic of the first bag."""
    if not specs:
        reader = _open(bag)
        try:
            topics = sorted(t for t, info in reader.topics.items() if info.msgtype in (IMAGE, COMPRESSED))
        finally:
            reader.close()
        return {_camera_name(topic): topic for topic in topics}
    cameras = {}
    for spec in specs:
        name, sep, topic = spec.partition("=")
        if not (sep and name and topic) or "/" in name:
            raise ValueError(f"--camera {spec!r}: expected NAME=/TOPIC with a NAME without '/'")
        cameras[name] = topic
    return cameras


def _image(msg, msgtype: str, where: str, res: int | None) -> np.ndarray:
    """One image message → uint8 (H, W, 3) RGB."""
    if msgtype == COMPRESSED:
        from PIL import Image, UnidentifiedImageError

        if not any(kind in msg.format.lower() for kind in ("jpeg", "jpg", "png")):
            raise ValueError(f"{where}: unsupported compressed format {msg.format!r} (jpeg or png)")
        try:
            image = Image.open(io.BytesIO(np.asarray(msg.data, np.uint8).tobytes()))
            if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
                raise ValueError(f"{where}: unsupported compressed image mode {image.mode} (8-bit colour or grey)")
            return resize(np.asarray(image.convert("RGB")), res)
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"{where}: cannot decode compressed image ({first_line(exc)})") from None
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise ValueError(f"{where}: unsupported image encoding {msg.encoding!r} ({', '.join(CHANNELS)})")
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)  # rows may be padded to `step`
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    pixels = pixels[..., 2::-1] if msg.encoding.startswith("bgr") else pixels[..., :3]
    return resize(np.ascontiguousarray(pixels), res)


def _joints(messages: list, where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """JointState messages → state (T, J or 2J), positions (T, J), joint names (order of the first message)."""
    names = list(messages[0].name)
    positions, velocities = [], []
    for msg in messages:
        pos, vel = np.asarray(msg.position, np.float64), np.asarray(msg.velocity, np.float64)
        if list(msg.name) != names:
            if sorted(msg.name) != sorted(names):
                raise ValueError(f"{where}: joints change from {names} to {list(msg.name)}")
            order = [list(msg.name).index(name) for name in names]
            pos, vel = pos[order], (vel[order] if len(vel) == len(order) else vel)
        if len(pos) != len(messages[0].position):
            raise ValueError(f"{where}: joint count changes from {len(messages[0].position)} to {len(pos)}")
        positions.append(pos)
        velocities.append(vel if len(vel) == len(pos) else None)
    positions = np.stack(positions).astype(np.float32)
    if all(v is not None for v in velocities):
        return np.concatenate([positions, np.stack(velocities).astype(np.float32)], axis=1), positions, names
    return positions, positions, names


def _episode(bag: Path, cameras: dict[str, str], args) -> Episode:
    reader = _open(bag)
    try:
        return _read_episode(reader, bag, cameras, args)
    except _errors() as exc:
        raise ValueError(f"{bag}: cannot read bag ({first_line(exc)})") from None
    finally:
        reader.close()


def _read_episode(reader, bag: Path, cameras: dict[str, str], args) -> Episode:
    types = {topic: info.msgtype for topic, info in reader.topics.items()}
    wanted = {topic: IMAGE for topic in cameras.values()}
    if args.joint_topic:
        wanted[args.joint_topic] = JOINTS
    for topic, kind in wanted.items():
        if topic not in types:
            listing = ", ".join(f"{t} ({types[t].split('/')[-1]})" for t in sorted(types))
            raise ValueError(f"{bag}: no topic {topic!r}; the bag has: {listing}")
        if (kind == JOINTS and types[topic] != JOINTS) or (kind == IMAGE and types[topic] not in (IMAGE, COMPRESSED)):
            raise ValueError(
                f"{bag}: topic {topic} is {types[topic]}, expected {kind if kind == JOINTS else 'an image'}"
            )
    connections = [c for c in reader.connections if c.topic in wanted]

    stamps: dict[str, list[int]] = {topic: [] for topic in wanted}  # pass 1: times only
    for connection, stamp, _ in reader.messages(connections=connections):
        stamps[connection.topic].append(stamp)
    if empty := [topic for topic, times in stamps.items() if not times]:
        raise ValueError(f"{bag}: no messages on {', '.join(empty)}")
    start, stop = max(t[0] for t in stamps.values()), min(t[-1] for t in stamps.values())
    if start > stop:
        raise ValueError(f"{bag}: topics {', '.join(wanted)} do not overlap in time")
    count = int((stop - start) * args.fps / 1e9 + 1e-9) + 1
    ticks = start + np.round(np.arange(count) * 1e9 / args.fps).astype(np.int64)
    picks = {topic: np.searchsorted(np.asarray(t), ticks, side="right") - 1 for topic, t in stamps.items()}

    needed = {topic: set(p.tolist()) for topic, p in picks.items()}  # pass 2: decode only the held messages
    decoded: dict[str, dict[int, object]] = {topic: {} for topic in wanted}
    seen = dict.fromkeys(wanted, 0)
    for connection, _, raw in reader.messages(connections=connections, stop=stop + 1):
        topic, index = connection.topic, seen[connection.topic]
        seen[topic] += 1
        if index in needed[topic]:
            msg = reader.deserialize(raw, connection.msgtype)
            where = f"{bag}: {topic}"
            decoded[topic][index] = msg if topic == args.joint_topic else _image(msg, types[topic], where, args.res)

    frames = {name: np.stack([decoded[topic][i] for i in picks[topic]]) for name, topic in cameras.items()}
    attrs = {}
    if args.joint_topic:
        held = [decoded[args.joint_topic][i] for i in picks[args.joint_topic]]
        state, positions, names = _joints(held, f"{bag}: {args.joint_topic}")
        actions = np.concatenate([positions[1:], positions[-1:]])  # next tick's positions = absolute targets
        attrs["joint_names"] = json.dumps(names)
    else:
        state = actions = np.zeros((count, 0), np.float32)
    dones = np.zeros(count, np.uint8)
    dones[-1] = 1
    return Episode(
        frames=frames,
        state=state,
        actions=actions,
        rewards=np.zeros(count, np.float32),
        dones=dones,
        success=args.success,
        source=f"rosbag:{bag}",
        attrs=attrs,
    )


def run(args: argparse.Namespace) -> dict:
    bags = [Path(p) for p in args.inputs]
    cameras = _cameras(args.camera, bags[0])
    if not cameras and not args.joint_topic:
        raise ValueError(f"{bags[0]}: no image topics and no --joint-topic: nothing to import")
    episodes = (_episode(bag, cameras, args) for bag in bags)
    return write_episodes(args, episodes, fps=args.fps, cameras=list(cameras), instruction=args.instruction)
