"""Demonstrations: the HDF5 demo file (layout in :mod:`robo_reward.data.format`), its reader and
writer, recording in simulation, importers, and viewing."""

from robo_reward.data.format import DemoFileError, validate
from robo_reward.data.reader import DemoClipDataset, DemoReader
from robo_reward.data.writer import DemoWriter, Episode

__all__ = ["DemoClipDataset", "DemoFileError", "DemoReader", "DemoWriter", "Episode", "validate"]
