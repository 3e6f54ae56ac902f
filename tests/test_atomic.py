"""storage/atomic.py: the one way flor replaces a file that others read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flor_cli.storage import atomic


def test_a_file_appears_whole_with_the_permissions_asked_or_not_at_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "out.txt"
    old = os.umask(0o027)
    try:
        atomic.write_whole(target, b"first")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640  # as open() would make it
        atomic.write_whole(target, b"second", mode=0o755)
        assert stat.S_IMODE(target.stat().st_mode) == 0o755  # exactly, whatever the umask
    finally:
        os.umask(old)

    def cut(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", cut)
    with pytest.raises(OSError):
        atomic.write_whole(target, b"third")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # nothing left
