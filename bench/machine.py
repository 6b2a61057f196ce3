"""The machine a benchmark ran on, as BENCHMARKS.md names it, and the environment its child processes get."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name and core count, e.g. "AMD EPYC (2 cores)"."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} ({os.cpu_count()} cores)"


def child_pythonpath() -> str:
    """PYTHONPATH for a child process: the project root first, then whatever the caller's PYTHONPATH holds (a GPU
    image's extra packages, say), so that the child imports what this process imports."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
