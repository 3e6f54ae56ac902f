"""Writing a file whole or not at all: the one way flor replaces a file that others read.

A reader (another flor command, a user's viewer) or a writer running at the same time
must never see half a file, and a write cut short (kill, full disk) must leave the old
file or none: the bytes go to a file beside the target, which is then renamed over it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def write_whole(target: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``target`` so that it appears whole or not at all (written aside,
    then renamed). ``mode``: the file's exact permissions; None: what ``open`` would
    give it (0o666 less the umask)."""
    with aside(target, mode) as f:
        f.write(data)


@contextmanager
def aside(target: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A file beside ``target`` to write its bytes into (for data too big to hold, like
    a checkpoint being copied): renamed over ``target`` when the block ends, removed if
    it raises. Its name starts with a dot (never an object's or a user's file name).
    ``mode``: as :func:`write_whole`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # never a link's target
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            yield f
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
