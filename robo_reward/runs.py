"""What makes a training run the same run: the config that shapes its result and the data it reads.

A run folder keeps ``run.json`` (that config and a fingerprint of each input). Resuming or rewriting the
folder under another config or other data is refused in one line naming the first difference, so a
rerun with new demos can never report "resumed" and describe a model it did not train.

Fingerprints are content, not paths or dates: a demo file's task, cameras, and every episode's length,
success and actions (a few kB each; labels written later do not change it); a model folder's weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py

from robo_reward.app import UsageError

RUN_FILE = "run.json"


class RunMismatchError(UsageError):
    """A folder holds another run than the one asked for."""


def fingerprint(path: str | Path) -> str:
    """A short content digest of a demo file or a model folder (``weights.safetensors``)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        weights = path / "weights.safetensors"
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:16]
    with h5py.File(path, "r") as f:
        data = f["data"]
        digest.update(json.dumps(dict(data.attrs), sort_keys=True, default=_plain).encode())
        for name in sorted(data):
            demo = data[name]
            digest.update(name.encode())
            digest.update(json.dumps(demo.attrs.get("success"), default=_plain).encode())
            if "actions" in demo:
                digest.update(demo["actions"][()].tobytes())
    return digest.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """JSON for what HDF5 attributes hold besides JSON's types: numpy scalars and arrays, bytes."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def identity(config: dict[str, Any], inputs: dict[str, str | Path | None]) -> dict[str, Any]:
    """``run.json``'s content: the result-shaping ``config`` and a fingerprint per named input."""
    return {"config": json.loads(json.dumps(config, default=str)),
            "inputs": {name: fingerprint(path) for name, path in inputs.items() if path}}  # fmt: skip


def stored(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunMismatchError(f"{path}: unreadable ({error}); move it away to start over") from None
    return raw if isinstance(raw, dict) else None


def save(folder: str | Path, ident: dict[str, Any]) -> None:
    """Write ``run.json`` atomically (a kill never leaves half of it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RUN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(ident, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / RUN_FILE)


def difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first difference between two identities, as ``what: old → new``; None when they agree."""
    for name in sorted(set(old.get("inputs", {})) | set(new.get("inputs", {}))):
        a, b = old.get("inputs", {}).get(name), new.get("inputs", {}).get(name)
        if a != b:
            return f"{name} differs (content {a} → {b})"
    flat_old, flat_new = flatten(old.get("config", {})), flatten(new.get("config", {}))
    for key in sorted(set(flat_old) | set(flat_new)):
        if flat_old.get(key) != flat_new.get(key):
            return f"{key}: {flat_old.get(key)!r} → {flat_new.get(key)!r}"
    return None


def check_same_run(folder: str | Path, ident: dict[str, Any], remedy: str) -> None:
    """Refuse (one line) when ``folder`` holds a run with another identity; ``remedy`` says what to do."""
    old = stored(folder)
    if old is None:
        return
    change = difference(old, ident)
    if change:
        raise RunMismatchError(f"{folder} holds another run ({change}); {remedy}")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b.c": leaf}``."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}
