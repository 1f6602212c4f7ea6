"""The keyboard e-stop: on a terminal, space or enter stops the deployment (the arm holds).

The terminal goes into cbreak mode (keys arrive one at a time, Ctrl-C still interrupts) only while the
deployment runs, and is restored on exit, whatever happened. Without a terminal (CI, a pipe) it is off:
the ROS e-stop topic remains.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from types import TracebackType

KEYS = (b" ", b"\n", b"\r")


class KeyboardEstop:
    """Calls ``callback("keyboard")`` when space or enter is pressed, while the ``with`` block runs."""

    def __init__(self, callback: Callable[[str], None], enabled: bool = True) -> None:
        self.callback = callback
        self.enabled = enabled and sys.stdin.isatty()
        self._stop = threading.Event()
        self._saved: list | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> KeyboardEstop:
        if self.enabled:
            fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self._thread = threading.Thread(target=self._watch, args=(fd,), name="keyboard-estop", daemon=True)
            self._thread.start()
        return self

    def _watch(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and os.read(fd, 1) in KEYS:
                self.callback("keyboard")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
