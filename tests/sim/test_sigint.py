"""Ctrl-C over a block that would lose it is held and delivered when the block ends."""

from __future__ import annotations

import signal
import threading

import pytest

import sim.render
from sim.sigint import sigint_held


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own Ctrl-C handler for each test, whatever an earlier test in this process left installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_block_is_raised_after_it_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    finished = False
    with pytest.raises(KeyboardInterrupt):
        with sigint_held():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # to the main thread: handled now
            for _ in range(1000):  # bytecodes on which Python runs pending handlers
                pass
            finished = True
    assert finished and signal.getsignal(signal.SIGINT) is before


def test_no_ctrl_c_no_exception_and_other_threads_are_left_alone():
    with sigint_held():
        pass
    seen = []
    worker = threading.Thread(target=lambda: seen.append(sigint_held().__enter__() is None))
    worker.start()
    worker.join()
    assert seen == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_gl_context_creation_delivers_a_ctrl_c_after_the_context_is_whole(monkeypatch):
    # triton's module init swallows a KeyboardInterrupt raised inside it: the Ctrl-C must outlive the import
    real_import = sim.render.preload_triton

    def interrupted_import():  # as triton's init does: whatever it raises inside is dropped
        real_import()  # (triton must still load before Mesa's LLVM: see preload_triton)
        try:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # to the main thread: handled now
            for _ in range(1000):
                pass
        except KeyboardInterrupt:
            pass

    monkeypatch.setattr(sim.render, "preload_triton", interrupted_import)
    with pytest.raises(KeyboardInterrupt):
        sim.render.make_gl_context(32, 32)
    monkeypatch.undo()
    context = sim.render.make_gl_context(32, 32)  # the backend is unharmed
    context.free()
