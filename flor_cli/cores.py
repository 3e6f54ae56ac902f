"""How many cores this process may use: the one answer replay's ``--jobs`` default and
the cache's index builds both size themselves by; and which GPUs it is told to use
(``--gpus`` of serve and replay, ``gpus=`` of flor.replay)."""

from __future__ import annotations

import os
from typing import Sequence


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as taskset or a container's
    cpuset sets it), else the machine's; at least 1."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def gpu_ids(gpus: str | Sequence[str] | None) -> list[str]:
    """The GPU ids of ``--gpus 0,1`` (comma-separated) or of a list, blanks dropped."""
    if gpus is None:
        return []
    items = gpus.split(",") if isinstance(gpus, str) else [str(g) for g in gpus]
    return [g.strip() for g in items if g.strip()]
