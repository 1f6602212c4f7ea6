"""Demonstrations: the HDF5 demo file (layout in :mod:`robo_reward.data.format`), its reader and
writer, recording in simulation, importers, and viewing.

Names are imported lazily, so that ``robo-reward --help`` and the importers do not pay for torch.
"""

from importlib import import_module

_EXPORTS = {
    "DemoFileError": "robo_reward.data.format",
    "validate": "robo_reward.data.format",
    "DemoReader": "robo_reward.data.reader",
    "DemoClipDataset": "robo_reward.data.reader",
    "DemoWriter": "robo_reward.data.writer",
    "Episode": "robo_reward.data.writer",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'robo_reward.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
