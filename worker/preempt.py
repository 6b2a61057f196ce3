"""Warm shutdown of a work horse: SIGTERM asks the running training to checkpoint and go back on the queue.

RQ's horse dies at once on SIGTERM (SIG_DFL); `genserve worker` installs `install_handler` in each horse instead, and
forwards its own SIGTERM to the horse, so a stopping worker hands its training over within seconds instead of
finishing it (hours) or losing it. The flag is process-wide because a signal is: one horse, one training.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from types import FrameType

log = logging.getLogger("genserve.worker")
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies

_requested = threading.Event()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _requested.set()


def install_handler(parent_pid: int | None = None) -> None:
    """In a freshly forked work horse: SIGTERM sets the flag instead of killing the process; and, given the worker's
    pid, the horse gets that SIGTERM when its worker dies (SIGKILL, an OOM kill), so that it checkpoints and stops
    within a step instead of training on as an orphan nobody owns (Linux; elsewhere the watchdog's fence stops it)."""
    _requested.clear()
    signal.signal(signal.SIGTERM, _on_sigterm)
    if parent_pid is not None:
        _die_with(parent_pid)


def _die_with(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("work horse %d: prctl(PR_SET_PDEATHSIG) failed (errno %d)", os.getpid(), ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # not Linux
        log.warning("work horse %d: cannot ask for a signal on the worker's death: %s", os.getpid(), exc)
    if os.getppid() != parent_pid:  # the worker died before the request took effect
        _requested.set()


def requested() -> bool:
    return _requested.is_set()
