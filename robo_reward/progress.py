"""Progress bars that suit where the output goes: tqdm's live bar on a terminal, and a few plain lines
(one every ``PLAIN_INTERVAL_S`` seconds, and the last) when stderr is a log file or a pipe — a live bar
redrawn with carriage returns writes thousands of lines into a log."""

from __future__ import annotations

import io
import sys
from typing import Any

from tqdm import tqdm

PLAIN_INTERVAL_S = 30.0


class _Lines(io.TextIOBase):
    """A stream that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip("\n")
        if line.strip():
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def progress_bar(**kwargs: Any) -> tqdm:
    """``tqdm(**kwargs)``, drawn live on a terminal and as plain lines elsewhere."""
    stream = kwargs.pop("file", None) or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(file=stream, **kwargs)
    kwargs["mininterval"] = max(kwargs.get("mininterval", 0.0), PLAIN_INTERVAL_S)
    return tqdm(file=_Lines(stream), ascii=True, ncols=100, **kwargs)
