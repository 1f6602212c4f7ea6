"""Reward-model checkpoints: ``weights.safetensors`` + ``config.json``, written atomically, read with no pickle.

safetensors is a JSON header plus raw tensor bytes, so loading a checkpoint can never run code; a
file that is not valid safetensors (a renamed pickle, say) is refused with a one-line error.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded safely; one line naming the file."""


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    """Write ``tensors`` and ``config`` into ``folder`` (each file replaced atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    _atomic_write(folder / WEIGHTS, lambda tmp: save_file(contiguous, tmp))
    _atomic_write(folder / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True)))
    return folder


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``(tensors, config)`` from ``folder``; never unpickles anything."""
    folder = Path(folder)
    weights, config = folder / WEIGHTS, folder / CONFIG
    for path in (weights, config):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (a checkpoint is {WEIGHTS} + {CONFIG})")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights}: not a safetensors file ({str(exc).splitlines()[0]}); refusing to load"
        ) from None
    try:
        cfg = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise CheckpointError(f"{config}: no 'kind' entry (which model is this?)")
    return tensors, cfg
