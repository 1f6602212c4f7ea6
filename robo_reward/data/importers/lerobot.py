"""Import a local LeRobot v3 dataset folder (parquet tables + shared mp4 files) as demos.

LeRobot v3 packs many episodes into each file, so nothing is found by file name alone:

- ``meta/info.json``: ``fps``, ``features`` (dtype ``video`` marks a camera), and the ``data_path`` /
  ``video_path`` templates (``chunk-{chunk_index:03d}/file-{file_index:03d}``);
- ``meta/episodes/chunk-*/file-*.parquet``: one row per episode — ``episode_index``, its data file
  (``data/chunk_index``, ``data/file_index``) and, per video key, its mp4 (``videos/<key>/chunk_index``,
  ``.../file_index``) and the segment of it that is this episode (``.../from_timestamp``, ``.../to_timestamp``);
- ``data/chunk-*/file-*.parquet``: one row per frame — ``episode_index``, ``frame_index``, ``timestamp``
  (seconds from the episode start), ``task_index``, ``observation.state``, ``action``, optional
  ``next.reward`` / ``next.done`` / ``next.success``;
- ``meta/tasks.parquet``: the task strings with their ``task_index``.

Mapping: ``observation.state`` → ``obs/state``, ``action`` → ``actions`` ((T, 0) when absent),
``next.reward`` → rewards (else zeros), ``next.done`` → dones (else done on the last step),
``next.success`` → success (else ``--success``/``--failure``), each video key → a camera named by its last
dotted part (``observation.images.front`` → ``front``). Each row's frame is the one shown at
``from_timestamp + timestamp`` (within half a frame). The episode's task string is stored as its
``instruction`` attribute; the file's instruction is ``--instruction`` or the first imported episode's task.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from robo_reward.data.importers.video import add_common_arguments, decode_video, first_line, write_episodes
from robo_reward.data.writer import Episode

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
COLUMNS = (
    "episode_index",
    "frame_index",
    "timestamp",
    "task_index",
    "observation.state",
    "action",
    "next.reward",
    "next.done",
    "next.success",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a LeRobot v3 dataset folder (with meta/info.json)")
    parser.add_argument("--episodes", default=None, help="comma-separated episode indices (default: all)")
    add_common_arguments(parser)


def _table(path: Path, columns=None, filters=None):
    """Read a parquet file's ``columns`` (names, or a test on a name; missing ones skipped), or fail in one line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        names = pq.read_schema(path).names
        keep = columns if callable(columns) else (lambda name: columns is None or name in columns)
        wanted = [name for name in names if keep(name)]
        return pq.read_table(path, columns=wanted, filters=filters)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path}: cannot read parquet ({first_line(exc)})") from None


def _info(root: Path) -> dict:
    path = root / "meta" / "info.json"
    if not root.is_dir():
        raise ValueError(f"{root}: no such dataset folder")
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (is {root} a LeRobot v3 dataset?)") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({first_line(exc)})") from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict) or not info.get("fps"):
        raise ValueError(f"{path}: not a LeRobot info.json (needs fps and features)")
    if not str(info.get("codebase_version", "v3")).startswith("v3"):
        raise ValueError(f"{path}: codebase_version {info['codebase_version']}, only v3 datasets are supported")
    return info


def _episodes_meta(root: Path) -> dict[int, dict]:
    """episode_index → its row of meta/episodes (the stats/* columns are skipped)."""
    files = sorted((root / "meta" / "episodes").glob("chunk-*/*.parquet"))
    if not files:
        raise ValueError(f"{root / 'meta' / 'episodes'}: no episode metadata parquet files")
    rows = {}
    for path in files:
        for row in _table(path, lambda column: not column.startswith("stats/")).to_pylist():
            rows[int(row["episode_index"])] = row
    return rows


def _tasks(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.parquet"
    if not path.exists():
        return {}
    table = _table(path)
    text = next(
        (name for name in table.column_names if str(table.schema.field(name).type) in ("string", "large_string")), None
    )  # "task", or the pandas index column
    if text is None or "task_index" not in table.column_names:
        raise ValueError(f"{path}: expected a task string column and task_index")
    return dict(zip(table.column("task_index").to_pylist(), table.column(text).to_pylist(), strict=True))


def _selected(spec: str | None, meta: dict[int, dict], root: Path) -> list[int]:
    if spec is None:
        return sorted(meta)
    try:
        wanted = list(dict.fromkeys(int(part) for part in spec.split(",") if part.strip()))
    except ValueError:
        raise ValueError(f"--episodes {spec!r}: expected comma-separated integers") from None
    if missing := [i for i in wanted if i not in meta]:
        raise ValueError(f"{root}: no episode {missing[0]} (the dataset has {len(meta)}: {min(meta)}..{max(meta)})")
    return wanted


def _data_file(root: Path, info: dict, meta: dict) -> Path:
    chunk, file = meta.get("data/chunk_index", 0), meta.get("data/file_index", 0)
    return root / (info.get("data_path") or DATA_PATH).format(chunk_index=chunk, file_index=file)


def _task(meta: dict, tasks: dict[int, str], table) -> str:
    """The episode's task: its first row's task_index in meta/tasks.parquet, else the episode row's tasks."""
    index = table.column("task_index")[0].as_py() if "task_index" in table.column_names and table.num_rows else None
    return tasks.get(index) or next(iter(meta.get("tasks") or []), "")


def _matrix(table, column: str, length: int) -> np.ndarray:
    if column not in table.column_names:
        return np.zeros((length, 0), np.float32)
    return np.asarray(table.column(column).to_pylist(), np.float32).reshape(length, -1)


def _frames(root: Path, info: dict, meta: dict, key: str, timestamps: np.ndarray, res: int | None) -> np.ndarray:
    """The frame shown at ``from_timestamp + t`` for each row's t: the nearest decoded one within half a frame."""
    chunk, file = meta.get(f"videos/{key}/chunk_index"), meta.get(f"videos/{key}/file_index")
    if chunk is None or file is None:
        raise ValueError(f"{root}: episode {meta['episode_index']} has no video file for {key}")
    path = root / (info.get("video_path") or VIDEO_PATH).format(video_key=key, chunk_index=chunk, file_index=file)
    queries = float(meta.get(f"videos/{key}/from_timestamp") or 0.0) + timestamps
    tolerance = 0.5 / float(info["fps"])
    frames, times = decode_video(path, res, start=queries.min() - tolerance, stop=queries.max() + tolerance)
    right = np.searchsorted(times, queries).clip(0, len(times) - 1)
    left = (right - 1).clip(0)
    nearest = np.where(np.abs(times[left] - queries) <= np.abs(times[right] - queries), left, right)
    worst = int(np.argmax(np.abs(times[nearest] - queries)))
    if abs(times[nearest[worst]] - queries[worst]) > tolerance:
        raise ValueError(f"{path}: no frame within {tolerance:.3f} s of {queries[worst]:.3f} s")
    return frames[nearest]


def _episode(root: Path, info: dict, meta: dict, cameras: dict[str, str], tasks: dict, args) -> Episode:
    index = int(meta["episode_index"])
    path = _data_file(root, info, meta)
    table = _table(path, COLUMNS, filters=[("episode_index", "=", index)])
    if "frame_index" in table.column_names:
        table = table.sort_by("frame_index")
    length = table.num_rows
    if length == 0:
        raise ValueError(f"{path}: no rows for episode {index}")
    fps = float(info["fps"])
    timestamps = (
        np.asarray(table.column("timestamp").to_pylist(), np.float64)
        if "timestamp" in table.column_names
        else np.arange(length) / fps
    )
    frames = {name: _frames(root, info, meta, key, timestamps, args.res) for name, key in cameras.items()}
    rewards = _matrix(table, "next.reward", length).reshape(-1) if "next.reward" in table.column_names else None
    if "next.done" in table.column_names:
        dones = _matrix(table, "next.done", length).reshape(-1).astype(np.uint8)
    else:
        dones = (np.arange(length) == length - 1).astype(np.uint8)
    success = bool(_matrix(table, "next.success", length).any()) if "next.success" in table.column_names else None
    return Episode(
        frames=frames,
        state=_matrix(table, "observation.state", length),
        actions=_matrix(table, "action", length),
        rewards=np.zeros(length, np.float32) if rewards is None else rewards,
        dones=dones,
        success=args.success if success is None else success,
        source=f"lerobot:{root}#episode_{index}",
        attrs={"instruction": _task(meta, tasks, table), "lerobot_episode_index": index},
    )


def run(args: argparse.Namespace) -> dict:
    root = Path(args.dataset)
    info = _info(root)
    keys = [key for key, feature in info["features"].items() if feature.get("dtype") == "video"]
    cameras = {key.split(".")[-1]: key for key in keys}
    if len(cameras) != len(keys):
        raise ValueError(f"{root}: video keys {keys} do not have distinct last parts to name cameras by")
    meta = _episodes_meta(root)
    selected = _selected(args.episodes, meta, root)
    tasks = _tasks(root)
    instruction = args.instruction
    if not instruction:  # the first episode's task (the writer needs it before any episode is loaded)
        first = meta[selected[0]]
        rows = _table(_data_file(root, info, first), ["task_index"], filters=[("episode_index", "=", selected[0])])
        instruction = _task(first, tasks, rows)
    episodes = (_episode(root, info, meta[i], cameras, tasks, args) for i in selected)
    return write_episodes(args, episodes, fps=float(info["fps"]), cameras=list(cameras), instruction=instruction)
