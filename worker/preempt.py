"""Warm shutdown of a work horse: SIGTERM asks the running training to checkpoint and go back on the queue.

RQ's horse dies at once on SIGTERM (SIG_DFL); `genserve worker` installs `install_handler` in each horse instead, and
forwards its own SIGTERM to the horse, so a stopping worker hands its training over within seconds instead of
finishing it (hours) or losing it. The flag is process-wide because a signal is: one horse, one training.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _requested.set()


def install_handler() -> None:
    """In a freshly forked work horse: SIGTERM sets the flag instead of killing the process."""
    _requested.clear()
    signal.signal(signal.SIGTERM, _on_sigterm)


def requested() -> bool:
    return _requested.is_set()
