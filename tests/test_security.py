"""Nothing trusted from outside: what a note or a shared store holds is checked before it
becomes a path, a ref, SQL or unpickled bytes (issue 9, docs/SECURITY.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flor_cli.storage.objects import BadObject, ObjectStore


def test_objects_are_verified_on_every_read_and_names_must_be_digests(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    digest = store.put(b"state")
    assert store.get(digest) == b"state"
    store.path(digest).write_bytes(b"swapped by someone who can write the store")
    with pytest.raises(BadObject, match="does not match its digest"):
        store.get(digest)
    outside = tmp_path / "evil.pkl"
    outside.write_bytes(b"x")
    for name in ("xx/../../evil.pkl", str(outside), "../" + "a" * 62, digest.upper(),
                 digest[:-1], 42, None):
        assert not store.has(name)
        with pytest.raises(BadObject):
            store.get(name)
    assert hashlib.sha256(b"state").hexdigest() == digest
