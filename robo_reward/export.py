"""``robo-reward export``: a ``robo-train`` run folder → the policy artifact a robot loads (see ``artifact.py``).

    robo-reward export runs/train/reach/<run> --out artifacts/reach

The story: read the run folder (``train_summary.json``; the checkpoint with ``weights_only=True``) →
rebuild rsl-rl's actor from the run's config and load its weights → wrap it as observation → clamped
mean action (normaliser inside the graph) → export ONNX into a temp folder next to the destination →
write ``spec.json`` from the task's :meth:`~sim.tasks.base.Task.policy_interface` → check onnxruntime
against the torch actor on random observations → rename the folder into place. Any failure leaves the
destination as it was; an existing folder that is not an artifact is never replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rsl_rl.models import MLPModel
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict
from torch import nn

import sim
from real.artifact import (
    ARTIFACT_FILES,
    FORMAT,
    FORMAT_VERSION,
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    SPEC_FILE,
    ArtifactError,
    PolicyArtifact,
    load_artifact,
)
from robo_reward.data.writer import fsync_dir, pid_alive
from robo_reward.jsonfile import read_json_object
from robo_reward.rl.vec_env import OBS_GROUP

SUMMARY = "train_summary.json"
OPSET = 18
TOLERANCE = 1e-5  # max |onnxruntime - torch| over the check batch; float32 MLPs agree to ~1e-7
CHECK_BATCH = 256
REPO = Path(__file__).resolve().parent.parent


class ExportError(ValueError):
    """A run folder that cannot be exported, or an export that failed its check; one line naming the file."""


@dataclass
class TrainRun:
    """What export needs from a run folder: the task, its config, rsl-rl's train_cfg and the checkpoint."""

    run_dir: Path
    task: str
    task_config: dict[str, Any]
    algo: dict[str, Any]  # rsl-rl train_cfg: actor, critic, algorithm, obs_groups, ...
    checkpoint: Path
    state: dict[str, Any]  # the checkpoint's dict: actor_state_dict, iter, ...
    code: dict[str, Any] | None = None  # {"commit", "dirty"} of the code that trained it, if the run recorded it


class OnnxPolicy(nn.Module):
    """obs float32 (B, obs_dim) → deterministic actions (B, act_dim) clamped to [-1, 1], as the env clips them.

    rsl-rl's ``as_onnx`` copy holds the normaliser (its running mean/std become graph constants) and the
    MLP; the distribution contributes only its deterministic output (the Gaussian's mean).
    """

    def __init__(self, actor: MLPModel) -> None:
        super().__init__()
        self.model = actor.as_onnx(verbose=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.model(obs).clamp(-1.0, 1.0)


def export_policy(run_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the artifact of ``run_dir``'s final checkpoint to ``out_dir``; return a summary (plain data).

    Raises :class:`ExportError` (one line) for a missing or malformed run folder, a checkpoint that needs
    pickled code, a destination that is not an artifact, or an ONNX graph that disagrees with torch.
    """
    run = read_run(Path(run_dir))
    out = Path(out_dir)
    _check_destination(out)
    try:
        env = sim.make(run.task, num_envs=1, config=run.task_config)
    except (KeyError, ValueError) as exc:  # an unknown task config key or value
        summary, reason = run.run_dir / SUMMARY, exc.args[0] if exc.args else exc
        raise ExportError(f"{summary}: key 'task_config' does not fit task {run.task!r} ({reason})") from None
    with env:
        obs_dim, act_dim, control_rate = env.obs_dim, env.act_dim, 1.0 / env.dt
        interface = env.task.policy_interface()
    actor = build_actor(run, obs_dim, act_dim)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        export_onnx(actor, obs_dim, tmp / ONNX_FILE)
        spec = make_spec(run, interface, obs_dim, act_dim, control_rate)
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        max_diff = check_onnx(actor, tmp)
        _publish_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "artifact": str(out),
        "task": run.task,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "iteration": spec["source"]["iteration"],
        "max_abs_diff": max_diff,
        "commit": spec["commit"],
        "dirty": spec["dirty"],
    }


# -- reading the run ------------------------------------------------------------------------------
def read_run(run_dir: Path) -> TrainRun:
    """Parse ``train_summary.json`` and load the checkpoint it names with ``weights_only=True``."""
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: no such run folder (expected {SUMMARY} and the checkpoint it names)")
    path = run_dir / SUMMARY
    summary = read_json_object(path, ExportError, f"is {run_dir} a robo-train run folder?")
    for key, kind in (("task", str), ("task_config", dict), ("checkpoint", str), ("config", dict)):
        if key not in summary:
            raise ExportError(f"{path}: missing key {key!r}")
        if not isinstance(summary[key], kind):
            raise ExportError(f"{path}: key {key!r} must be a {kind.__name__}")
    algo = summary["config"].get("algo")
    if not isinstance(algo, dict) or not isinstance(algo.get("actor"), dict):
        raise ExportError(f"{path}: missing key 'config.algo.actor' (rsl-rl's train_cfg)")
    if summary["task"] not in sim.TASKS:
        known = ", ".join(sorted(sim.TASKS))
        raise ExportError(f"{path}: key 'task' is {summary['task']!r}, unknown; known tasks: {known}")
    checkpoint = run_dir / Path(summary["checkpoint"]).name
    state = read_checkpoint(checkpoint)
    code = summary.get("code") if isinstance(summary.get("code"), dict) else None
    return TrainRun(run_dir, summary["task"], summary["task_config"], algo, checkpoint, state, code)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """rsl-rl's checkpoint dict, loaded with ``weights_only=True``: a file that needs pickled code is refused."""
    if not path.is_file():
        raise ExportError(f"{path}: missing (train_summary.json 'checkpoint' names it)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it did not write itself
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, EOFError, KeyError, RuntimeError for bad files
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            what = f"it imports {found.group(1)}"
            raise ExportError(f"{path}: loading it would run pickled code ({what}); refusing") from None
        raise ExportError(f"{path}: not a torch checkpoint that loads with weights_only=True; refusing") from None
    if not isinstance(state, dict) or not isinstance(state.get("actor_state_dict"), dict):
        raise ExportError(f"{path}: missing key 'actor_state_dict' (not an rsl-rl checkpoint)")
    return state


def build_actor(run: TrainRun, obs_dim: int, act_dim: int) -> MLPModel:
    """rsl-rl's actor as the run's config describes it, with the checkpoint's weights, in eval mode.

    Only class names that rsl-rl resolves itself are accepted: a dotted path in a run folder's config
    would import arbitrary code. The artifact's policy is a flat MLP (no recurrent state, no images).
    """
    summary = run.run_dir / SUMMARY
    actor_cfg = dict(run.algo["actor"])
    name = actor_cfg.pop("class_name", None)
    if name != "MLPModel":
        raise ExportError(f"{summary}: key 'config.algo.actor.class_name' is {name!r}; export supports 'MLPModel'")
    dist = actor_cfg.get("distribution_cfg")
    if dist is not None and not re.fullmatch(r"\w+", str(dist.get("class_name", ""))):
        raise ExportError(f"{summary}: key 'config.algo.actor.distribution_cfg.class_name' must name an rsl-rl class")
    groups = run.algo.get("obs_groups", {}).get("actor", [OBS_GROUP])
    if groups != [OBS_GROUP]:
        raise ExportError(f"{summary}: key 'config.algo.obs_groups.actor' is {groups}; the env has [{OBS_GROUP!r}]")
    obs = TensorDict({OBS_GROUP: torch.zeros(1, obs_dim)}, batch_size=[1])
    try:
        actor = resolve_callable(name)(obs, {"actor": groups}, "actor", act_dim, **actor_cfg)
    except (TypeError, ValueError, AttributeError, ImportError) as exc:
        raise ExportError(f"{summary}: key 'config.algo.actor' cannot build rsl-rl's actor ({exc})") from None
    try:
        actor.load_state_dict(run.state["actor_state_dict"])
    except RuntimeError as exc:
        reason = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ExportError(f"{run.checkpoint}: actor weights do not fit config.algo.actor ({reason})") from None
    return actor.eval()


# -- writing the artifact -------------------------------------------------------------------------
def export_onnx(actor: MLPModel, obs_dim: int, path: Path) -> None:
    """Trace :class:`OnnxPolicy` with torch's exporter: opset 18, dynamic batch axis, weights in the file."""
    policy = OnnxPolicy(actor).eval()
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        torch.onnx.export(
            policy,
            (torch.zeros(2, obs_dim),),
            str(path),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            opset_version=OPSET,
            dynamic_shapes={"obs": {0: batch}},
            external_data=False,
            verbose=False,
        )


def make_spec(run: TrainRun, interface: dict[str, Any], obs_dim: int, act_dim: int, rate: float) -> dict[str, Any]:
    """spec.json's content (see :mod:`real.artifact`); ``interface`` from the task's policy_interface.

    The commit is the one the run was trained with (recorded in its summary), else the exporting code's."""
    if run.code and run.code.get("commit"):
        commit, dirty = run.code["commit"], run.code.get("dirty")
    else:
        commit, dirty = git_state(REPO)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": run.task,
        "task_config": run.task_config,
        "commit": commit,
        "dirty": dirty,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "observation": {"dim": obs_dim, "names": interface["observation_names"]},
        "action": {"dim": act_dim, **interface["action"]},
        "joints": interface["joints"],
        "control_rate_hz": rate,
        "onnx": {"file": ONNX_FILE, "input": ONNX_INPUT, "output": ONNX_OUTPUT, "opset": OPSET},
        "source": {
            "run_dir": str(run.run_dir.resolve()),
            "checkpoint": run.checkpoint.name,
            "iteration": int(run.state.get("iter", -1)),  # rsl-rl's index of the last finished iteration
        },
    }


def check_onnx(actor: MLPModel, folder: Path, seed: int = 0) -> float:
    """Load the unpublished artifact as a robot would and compare it with the torch actor; return max |diff|.

    Observations are drawn around the normaliser's statistics (mean ± 3 std), where the policy is used.
    """
    artifact = load_checked_artifact(folder)
    rng = np.random.default_rng(seed)
    mean, std = np.zeros(artifact.obs_dim), np.ones(artifact.obs_dim)
    if actor.obs_normalization:
        mean, std = actor.obs_normalizer.mean.numpy(), actor.obs_normalizer.std.numpy()
    obs = (mean + std * rng.uniform(-3.0, 3.0, size=(CHECK_BATCH, artifact.obs_dim))).astype(np.float32)
    with torch.no_grad():
        expected = actor(TensorDict({OBS_GROUP: torch.from_numpy(obs)}, batch_size=[CHECK_BATCH])).clamp(-1.0, 1.0)
    got = artifact.act(obs)
    if got.shape != tuple(expected.shape):
        raise ExportError(f"{folder / ONNX_FILE}: returns shape {got.shape}, torch gives {tuple(expected.shape)}")
    max_diff = float(np.abs(got - expected.numpy()).max())
    if not max_diff < TOLERANCE:
        raise ExportError(
            f"{folder / ONNX_FILE}: ONNX actions differ from the torch policy by {max_diff:.3g} (> {TOLERANCE}); "
            "nothing written"
        )
    return max_diff


def load_checked_artifact(path: str | Path) -> PolicyArtifact:
    """:func:`real.artifact.load_artifact`, then also check that the spec's task exists in :mod:`sim` and, with
    the spec's task config, observes obs_dim and takes act_dim (a robot cannot check this: it has no simulator)."""
    artifact = load_artifact(path)
    _check_task(artifact.spec, artifact.path / SPEC_FILE)
    return artifact


def _check_task(spec: dict[str, Any], path: Path) -> None:
    """The spec's task exists in the simulator and, with the spec's task config, has the spec's sizes."""
    name = spec["task"]
    if name not in sim.TASKS:
        raise ArtifactError(f"{path}: key 'task' is {name!r}, unknown; known tasks: {', '.join(sorted(sim.TASKS))}")
    try:
        task = sim.TASKS[name](1, spec["task_config"])  # the config can change sizes (an arm's action mode)
    except (KeyError, ValueError) as exc:
        reason = exc.args[0] if exc.args else exc
        raise ArtifactError(f"{path}: key 'task_config' does not fit task {name!r} ({reason})") from None
    for key, dim in (("observation.dim", task.obs_dim), ("action.dim", task.act_dim)):
        value = spec[key.split(".")[0]]["dim"]
        if value != dim:
            raise ArtifactError(f"{path}: key {key!r} is {value}, but task {name!r} has {dim}")


def git_state(repo: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, tracked files modified) of the git work tree the code runs from; (None, None) if none.

    Only a work tree whose top level is the package's own parent counts: an installed copy inside some
    other repository (e.g. a venv in a checkout) has no commit of its own. Untracked files do not make it dirty.
    """
    try:
        top = _git(repo, "rev-parse", "--show-toplevel")
        if Path(top).resolve() != repo:
            return None, None
        return _git(repo, "rev-parse", "HEAD"), bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.strip()


def _is_artifact(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and {p.name for p in folder.iterdir()} <= ARTIFACT_FILES


def _check_destination(out: Path) -> None:
    if (out.exists() or out.is_symlink()) and not _is_artifact(out):
        what = "a file" if not out.is_dir() else "a folder with other files"
        raise ExportError(f"{out}: exists and is {what}, not a policy artifact; refusing to overwrite it")


def _remove_stale_temps(out: Path) -> None:
    """Delete temp folders of exports to ``out`` whose process is gone (killed mid-export)."""
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        pid = tmp.name[len(out.name) + 2 : -4]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _publish_folder(tmp: Path, out: Path) -> None:
    """Sync the finished folder ``tmp`` and rename it to ``out``; a previous artifact there is moved aside
    first and deleted after (readers see the old artifact or the new one, never a mix of files)."""
    for name in ARTIFACT_FILES:
        with open(tmp / name, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(tmp)
    _check_destination(out)  # it may have appeared while we exported
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}") if out.exists() else None
    if old is not None:
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
