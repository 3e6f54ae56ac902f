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


def test_checkpoint_objects_are_as_readable_as_any_file_the_user_writes(tmp_path: Path) -> None:
    """Objects were written through mkstemp (0600), so in a store shared by several users
    (``flor.store`` a shared directory) nobody else could restore a checkpoint: written
    objects, and those ``flor push`` copies there, follow the umask as ``open`` does."""
    from flor_cli.services.sync import _copy_object
    from flor_cli.storage.objects import ObjectStore

    old = os.umask(0o022)
    try:
        local, shared = ObjectStore(tmp_path / "local"), ObjectStore(tmp_path / "shared")
        sha = local.put(b"weights")
        _copy_object(local, shared, sha)
    finally:
        os.umask(old)
    for store in (local, shared):
        assert stat.S_IMODE(store.path(sha).stat().st_mode) == 0o644
        assert [p.name for p in store.path(sha).parent.iterdir()] == [sha[2:]]  # no leftover
