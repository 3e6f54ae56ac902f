"""One exclusive lock on a file, across threads and processes, for the steps that two
flor processes must not take at once (adding git worktrees, building the query cache)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if missing) for the block. Where there are
    no advisory locks (Windows), the block runs unguarded."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
