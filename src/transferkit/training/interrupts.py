"""Ctrl-C that always stops a run.

Python turns SIGINT into a `KeyboardInterrupt` raised wherever the main thread happens to be. When
that is a finalizer (`__del__`, a weakref callback: TensorFlow runs many while training) the
exception is printed as "Exception ignored" and dropped, and the run carries on to its end. The
CLI installs `on_sigint` while a command runs; it remembers the signal, and `fit_phase` raises
`KeyboardInterrupt` again after the next batch if the first one was swallowed.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["catch_interrupts", "interrupt_received", "on_sigint"]

_received = {"count": 0}


def on_sigint(signum=None, frame=None) -> None:
    """SIGINT handler: remembers the signal, then raises `KeyboardInterrupt` as Python's does."""
    _received["count"] += 1
    raise KeyboardInterrupt


def interrupt_received() -> bool:
    """True once SIGINT arrived while `catch_interrupts` was active."""
    return _received["count"] > 0


@contextlib.contextmanager
def catch_interrupts():
    """Installs `on_sigint` for the block (main thread only) and forgets earlier signals."""
    _received["count"] = 0
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _received["count"] = 0
