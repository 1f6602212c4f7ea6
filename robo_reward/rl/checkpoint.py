"""Resuming PPO runs safely: rsl-rl checkpoints written atomically and read without pickle code execution.

A run directory holds rsl-rl checkpoints ``model_<iteration>.pt`` (rsl-rl's format: ``actor_state_dict``,
``critic_state_dict`` — the observation normalisers live in these —, ``optimizer_state_dict``, ``iter``,
``infos``) and ``train_state.json``, the trainer's own progress (:class:`TrainState`). Write order: the
checkpoint first, then the state that goes with it, each to a temp file in the same folder that is synced
and renamed. A kill at any moment therefore leaves the previous checkpoint and state valid, and
:func:`resume` loads exactly the checkpoint the state was written with.

rsl-rl's own ``OnPolicyRunner.load`` unpickles with ``weights_only=False`` (a checkpoint could run any
code); :func:`load_runner_checkpoint` reads with ``weights_only=True`` and refuses anything else.
"""

from __future__ import annotations

import base64
import json
import os
import re
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rsl_rl.runners import OnPolicyRunner

from robo_reward.app import first_line
from robo_reward.data.writer import publish, remove_stale_temps
from robo_reward.jsonfile import read_json_object
from robo_reward.rl.vec_env import EpisodeLog

STATE_FILE = "train_state.json"
STATE_VERSION = 1
CHECKPOINT_RE = re.compile(r"model_(\d+)\.pt")
CHECKPOINT_KEYS = ("actor_state_dict", "critic_state_dict", "optimizer_state_dict", "iter")
PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)


class ResumeError(ValueError):
    """A checkpoint or training state that cannot be resumed from; one line naming the file."""


# -- checkpoints ----------------------------------------------------------------------------------
def checkpoint_name(iteration: int) -> str:
    """The file name rsl-rl gives the checkpoint of ``iteration``: ``model_<iteration>.pt``."""
    return f"model_{iteration}.pt"


def save_runner_checkpoint(runner: OnPolicyRunner, path: str | Path, infos: dict | None = None) -> Path:
    """Write ``runner``'s models, optimizer and ``current_learning_iteration`` to ``path`` in rsl-rl's format.

    The file appears whole or not at all: torch.save goes to ``.<name>.<pid>.tmp`` in the same folder,
    which is synced and renamed over ``path``. Temp files of writers killed earlier are removed first.
    ``infos`` must be plain data (dicts, lists, str, numbers, bool, None, tensors) so that the checkpoint
    stays loadable with ``weights_only=True``; anything else is refused before writing.
    """
    path = Path(path)
    _check_plain(infos, path, "infos")
    saved = runner.alg.save()
    saved["iter"] = runner.current_learning_iteration
    saved["infos"] = infos
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(saved, tmp)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict stored in the rsl-rl checkpoint ``path``, read with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"{path}: missing (no checkpoint there)")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of non-torch files
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, weights_only=True, map_location=map_location)
    except Exception as exc:
        if "Weights only load failed" in str(exc):
            raise ResumeError(
                f"{path}: not just tensors and plain data — possibly pickled code ({_unpickler_detail(exc)}); "
                "refusing to load it"
            ) from None
        raise ResumeError(f"{path}: not a torch checkpoint ({first_line(exc)})") from None
    if not isinstance(loaded, dict):
        raise ResumeError(f"{path}: not an rsl-rl checkpoint (holds a {type(loaded).__name__}, not a dict)")
    missing = [key for key in CHECKPOINT_KEYS if key not in loaded]
    if missing:
        raise ResumeError(f"{path}: not an rsl-rl checkpoint (missing {', '.join(missing)})")
    if not isinstance(loaded["iter"], int):
        raise ResumeError(f"{path}: 'iter' must be an int, got {type(loaded['iter']).__name__}")
    return loaded


def load_runner_checkpoint(runner: OnPolicyRunner, path: str | Path) -> int:
    """Load actor, critic (with their normalisers) and optimizer from ``path`` into ``runner``.

    Sets and returns ``runner.current_learning_iteration`` from the checkpoint's ``iter``. A checkpoint
    whose networks do not match the runner's (another task or network size) raises :class:`ResumeError`;
    the runner may then be partly loaded and should be discarded.
    """
    loaded = read_checkpoint(path, map_location=runner.device)
    try:
        runner.alg.load(loaded, None, True)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ResumeError(f"{path}: does not fit this runner's networks ({first_line(exc)})") from None
    runner.current_learning_iteration = loaded["iter"]
    return loaded["iter"]


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The ``model_<it>.pt`` in ``run_dir`` with the highest ``it`` that is a complete file.

    Temp files never match the name; a file cut short (rsl-rl's own ``learn`` saves without a rename)
    lacks the zip directory torch.save writes last, and is skipped.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"{run_dir}: no such run directory")
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT_RE.fullmatch(p.name))]
    for _, path in sorted(found, reverse=True):
        if path.is_file() and zipfile.is_zipfile(path):
            return path
    raise ResumeError(f"{run_dir}: no complete checkpoint model_<iteration>.pt")


# -- trainer state --------------------------------------------------------------------------------
STATE_FIELDS: dict[str, type | tuple[type, ...]] = {  # train_state.json keys besides episodes
    "iterations_done": int,
    "env_steps": int,
    "wall_s": (int, float),
    "history": list,
    "torch_rng": (str, type(None)),
}


@dataclass
class TrainState:
    """What the trainer needs besides the networks to continue a run, kept as ``train_state.json``.

    Convention: after ``iterations_done`` iterations the trainer sets ``runner.current_learning_iteration``
    to ``iterations_done`` (rsl-rl leaves it one short after ``learn``), saves the checkpoint
    :attr:`checkpoint` (``model_<iterations_done>.pt``), then this state. ``history`` holds one row per
    iteration done (``iteration``, ``env_steps``, ``wall_s``, ``episodes``, ``successes``,
    ``success_rate``, ``mean_return``, optionally ``task_return``); ``episodes`` is the adapter's
    :class:`EpisodeLog` so far; ``torch_rng`` is :func:`capture_torch_rng` at save time, so a resumed
    run samples actions and minibatches from where the saved one stopped.
    """

    iterations_done: int = 0  # PPO iterations trained so far, over all resumes
    env_steps: int = 0  # env steps collected so far (all envs)
    wall_s: float = 0.0  # training wall time so far, seconds
    history: list[dict[str, Any]] = field(default_factory=list)
    episodes: EpisodeLog = field(default_factory=EpisodeLog)
    torch_rng: str | None = None
    warm_start: dict[str, Any] | None = None  # the demonstration warm start's report (rl/warm_start.py), if any

    @property
    def checkpoint(self) -> str:
        """The file name, in the run dir, of the checkpoint this state goes with."""
        return checkpoint_name(self.iterations_done)

    def save(self, run_dir: str | Path) -> Path:
        """Write ``run_dir/train_state.json`` atomically (temp file, sync, rename)."""
        path = Path(run_dir) / STATE_FILE
        _check_consistent(self, path)
        text = json.dumps({"version": STATE_VERSION, **asdict(self)}) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text)
            publish(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, run_dir: str | Path, iteration: int | None = None) -> TrainState:
        """Read ``run_dir/train_state.json``; with ``iteration`` (a loaded checkpoint's), check they agree."""
        path = Path(run_dir) / STATE_FILE
        raw = read_json_object(path, ResumeError, "this run saved no training state to resume from")
        if raw.get("version") != STATE_VERSION:
            version = raw.get("version")
            raise ResumeError(f"{path}: not a version-{STATE_VERSION} training state (version {version!r})")
        fields = {key: _field(raw, key, kind, path) for key, kind in STATE_FIELDS.items()}
        warm_start = raw.get("warm_start")  # optional: states written before warm starts existed lack it
        if warm_start is not None and not isinstance(warm_start, dict):
            raise ResumeError(f"{path}: 'warm_start' has the wrong type ({type(warm_start).__name__})")
        state = cls(**fields, episodes=_episode_log(raw.get("episodes"), path), warm_start=warm_start)
        state.wall_s = float(state.wall_s)
        _check_consistent(state, path)
        if iteration is not None:
            state.check_iteration(iteration, path)
        return state

    def check_iteration(self, iteration: int, where: str | Path) -> None:
        """Raise :class:`ResumeError` unless ``iteration`` (a checkpoint's ``iter``) is ``iterations_done``."""
        if iteration != self.iterations_done:
            raise ResumeError(
                f"{where}: the training state is at iteration {self.iterations_done} "
                f"but the checkpoint holds iteration {iteration}"
            )


def resume(runner: OnPolicyRunner, run_dir: str | Path) -> TrainState:
    """Load the training state of ``run_dir`` and its checkpoint into ``runner``; restore torch's RNG.

    The state is written after its checkpoint, so the checkpoint it names is complete even when a newer
    one (written just before a kill) exists — which is why this does not take :func:`latest_checkpoint`.
    """
    run_dir = Path(run_dir)
    state = TrainState.load(run_dir)
    path = run_dir / state.checkpoint
    state.check_iteration(load_runner_checkpoint(runner, path), path)
    if state.torch_rng is not None:
        restore_torch_rng(state.torch_rng)
    return state


def capture_torch_rng() -> str:
    """torch's CPU generator state as base64 text (JSON-friendly)."""
    return base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")


def restore_torch_rng(state: str) -> None:
    """Set torch's CPU generator to a state from :func:`capture_torch_rng`."""
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state)), dtype=torch.uint8))


# -- helpers --------------------------------------------------------------------------------------
def _unpickler_detail(exc: Exception) -> str:
    """What torch's weights-only unpickler objected to, e.g. ``Unsupported global: GLOBAL os.system ...``."""
    _, _, detail = str(exc).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[0].split(". Please")[0][:200] if lines else "unsupported pickle content"


def _check_plain(value: Any, path: Path, where: str) -> None:
    """Refuse values torch.load(weights_only=True) could not read back (they would need pickled code)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, path, f"{where} key")
            _check_plain(item, path, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _check_plain(item, path, f"{where}[{k}]")
    elif not isinstance(value, PLAIN_TYPES):
        raise ValueError(
            f"{path}: {where} is a {type(value).__name__}, not plain data (dict, list, str, number, bool, None, "
            "tensor); convert it first (e.g. OmegaConf.to_container)"
        )


def _field(raw: dict, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in raw:
        raise ResumeError(f"{path}: missing key {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ResumeError(f"{path}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _episode_log(raw: Any, path: Path) -> EpisodeLog:
    """An :class:`EpisodeLog` from JSON: each field a list, or a dict of named lists (``term_sums``)."""
    names = tuple(EpisodeLog.__dataclass_fields__)
    if not isinstance(raw, dict) or set(raw) != set(names) or any(_lists(value) is None for value in raw.values()):
        raise ResumeError(f"{path}: 'episodes' must hold the fields {', '.join(names)}, each a list or dict of lists")
    return EpisodeLog(**raw)


def _lists(value: Any) -> list[list] | None:
    """The lists in an episode-log field (itself a list, or a dict of lists); ``None`` if it is neither."""
    if isinstance(value, list):
        return [value]
    if isinstance(value, dict) and all(isinstance(item, list) for item in value.values()):
        return list(value.values())
    return None


def _check_consistent(state: TrainState, path: Path) -> None:
    """One-line errors for a state that contradicts itself (a hand-edited or mixed-up file)."""
    if len(state.history) != state.iterations_done:
        raise ResumeError(f"{path}: {len(state.history)} history rows for {state.iterations_done} iterations done")
    if any(not isinstance(row, dict) or "iteration" not in row for row in state.history):
        raise ResumeError(f"{path}: every history row must be an object with an 'iteration'")
    if not isinstance(state.episodes, EpisodeLog):
        raise TypeError(f"{path}: episodes must be an EpisodeLog, got {type(state.episodes).__name__}")
    lengths: set[int] = set()
    for name, value in asdict(state.episodes).items():
        lists = _lists(value)
        if lists is None:
            raise ResumeError(f"{path}: the episode log's {name!r} must be a list or a dict of lists")
        lengths.update(len(values) for values in lists)
    if len(lengths) > 1:
        raise ResumeError(f"{path}: the episode log's lists have different lengths {sorted(lengths)}")
