"""How many cores this process may use: the one answer replay's ``--jobs`` default and
the cache's index builds both size themselves by."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as taskset or a container's
    cpuset sets it), else the machine's; at least 1."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform (macOS)
        return os.cpu_count() or 1
