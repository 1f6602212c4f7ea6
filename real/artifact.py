"""The policy artifact: the one contract between training and a robot (README, "Policy artifact").

A folder with two files, written by ``robo-reward export``:

- ``policy.onnx``: input ``obs`` float32 (B, obs_dim), output ``actions`` float32 (B, act_dim) in [-1, 1],
  a dynamic batch axis; the observation normaliser is inside the graph, the action is the deterministic
  (mean) action, clamped.
- ``spec.json``: ``format``, ``format_version``, ``task``, ``task_config``, ``commit``, ``dirty``, ``created``,
  ``observation`` {``dim``, ``names``}, ``action`` {``dim``, ``mode``, ``names``, ``scale``, ``semantics``},
  ``joints`` {``names``, ``lower``, ``upper``}, ``control_rate_hz``, ``onnx`` {``file``, ``input``,
  ``output``, ``opset``}, ``source`` {``run_dir``, ``checkpoint``, ``iteration``}.

This module imports numpy and onnxruntime only — no torch, no simulator, no training code — so a robot
loads a policy exactly as ``robo-reward rollout`` does. Checking the spec against the simulator's task is
the training side's job (``robo_reward.export.check_task``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

SPEC_FILE = "spec.json"
ONNX_FILE = "policy.onnx"
ARTIFACT_FILES = frozenset({SPEC_FILE, ONNX_FILE})
FORMAT = "robo_reward.policy"
FORMAT_VERSION = 1
ONNX_INPUT = "obs"
ONNX_OUTPUT = "actions"
# dotted key -> the JSON types it must have
REQUIRED: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "task": (str,),
    "task_config": (dict,),
    "observation.dim": (int,),
    "observation.names": (list,),
    "action.dim": (int,),
    "action.mode": (str,),
    "action.names": (list,),
    "action.scale": (list,),
    "action.semantics": (str,),
    "joints.names": (list,),
    "joints.lower": (list,),
    "joints.upper": (list,),
    "control_rate_hz": (int, float),
    "onnx.file": (str,),
    "onnx.input": (str,),
    "onnx.output": (str,),
}


class ArtifactError(ValueError):
    """A policy artifact that cannot be used; one line naming the file and the key."""


@dataclass(frozen=True)
class PolicyArtifact:
    """A loaded artifact: its folder, its parsed ``spec`` and an onnxruntime session of its policy."""

    path: Path
    spec: dict[str, Any]
    session: ort.InferenceSession

    @property
    def task(self) -> str:
        return self.spec["task"]

    @property
    def obs_dim(self) -> int:
        return self.spec["observation"]["dim"]

    @property
    def act_dim(self) -> int:
        return self.spec["action"]["dim"]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions float32 (B, act_dim) in [-1, 1] for observations (B, obs_dim)."""
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        onnx = self.spec["onnx"]
        return self.session.run([onnx["output"]], {onnx["input"]: obs})[0]


def cpu_session(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime CPU session with one intra-op thread: a small MLP gains nothing from more, and a
    simulator or robot driver needs the other cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_artifact(path: str | Path) -> PolicyArtifact:
    """Read and validate the artifact folder ``path``; raise :class:`ArtifactError` (one line) if unusable.

    Checks: both files present, spec.json valid JSON with every required key and type, names per entry,
    the ONNX graph's input/output names and shapes against the spec (dynamic batch axis, obs_dim, act_dim).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such artifact folder (expected {ONNX_FILE} + {SPEC_FILE})")
    spec = read_spec(folder / SPEC_FILE)
    onnx_path = folder / spec["onnx"]["file"]
    if not onnx_path.is_file():
        raise ArtifactError(f"{onnx_path}: missing (spec.json onnx.file names it)")
    try:
        session = cpu_session(onnx_path)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid models
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{onnx_path}: not a loadable ONNX model ({reason})") from None
    _check_graph(session, spec, onnx_path)
    return PolicyArtifact(folder, spec, session)


def read_spec(path: Path) -> dict[str, Any]:
    """Parse and check ``spec.json`` on its own (keys, types, consistent dims); no ONNX, no simulator."""
    spec = _read_json_object(path)
    for key, types in REQUIRED.items():
        value = _lookup(spec, key, path)
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join(t.__name__ for t in types)
            raise ArtifactError(f"{path}: key {key!r} must be {names}, got {json.dumps(value)[:60]}")
    if spec["format"] != FORMAT:
        raise ArtifactError(f"{path}: key 'format' is {spec['format']!r}, expected {FORMAT!r}")
    if spec["format_version"] > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: key 'format_version' is {spec['format_version']}; this code reads up to {FORMAT_VERSION}"
        )
    for section in ("observation", "action"):
        dim = spec[section]["dim"]
        if dim < 1:
            raise ArtifactError(f"{path}: key '{section}.dim' must be positive, got {dim}")
        if len(spec[section]["names"]) != dim:
            count = len(spec[section]["names"])
            raise ArtifactError(f"{path}: key '{section}.names' has {count} names for {section}.dim {dim}")
    if len(spec["action"]["scale"]) != spec["action"]["dim"]:
        raise ArtifactError(f"{path}: key 'action.scale' needs one entry per action ({spec['action']['dim']})")
    joints = spec["joints"]
    if not len(joints["names"]) == len(joints["lower"]) == len(joints["upper"]):
        raise ArtifactError(f"{path}: keys 'joints.names', 'joints.lower', 'joints.upper' differ in length")
    return spec


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or :class:`ArtifactError` naming the file in one line."""
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (an artifact is {ONNX_FILE} + {SPEC_FILE})")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{path}: must hold a JSON object, got {type(value).__name__}")
    return value


def _lookup(spec: dict[str, Any], key: str, path: Path) -> Any:
    value: Any = spec
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ArtifactError(f"{path}: missing key {key!r}")
        value = value[part]
    return value


def _check_graph(session: ort.InferenceSession, spec: dict[str, Any], path: Path) -> None:
    """The graph takes float32 (batch, obs_dim) and returns float32 (batch, act_dim) under the spec's names."""
    ends = {"input": (session.get_inputs(), "observation"), "output": (session.get_outputs(), "action")}
    for kind, (args, section) in ends.items():
        name, dim = spec["onnx"][kind], spec[section]["dim"]
        match = [arg for arg in args if arg.name == name]
        if not match:
            found = [arg.name for arg in args]
            raise ArtifactError(f"{path}: has no {kind} {name!r} (spec.json onnx.{kind}); its {kind}s: {found}")
        shape = match[0].shape
        if match[0].type != "tensor(float)" or len(shape) != 2 or shape[1] != dim or isinstance(shape[0], int):
            raise ArtifactError(
                f"{path}: {kind} {name!r} is {match[0].type} {shape}, but spec.json {section}.dim says float "
                f"['batch', {dim}] (with a dynamic batch axis)"
            )
