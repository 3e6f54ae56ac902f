"""Content-addressed checkpoint store: ``<root>/ab/cdef...`` named by sha256 of the bytes.

Content addressing makes writes idempotent (two runs that save identical state share
a file) and lets a shared store be a plain directory or mount that many clones write to
without coordination: a name can only ever hold one content.
"""

from __future__ import annotations

import os
from pathlib import Path

from flor_cli.errors import UserError


class ObjectStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        # imported here: every flor run and training script loads this module, few write
        import hashlib
        import tempfile

        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)  # atomic: readers never see a half-written object
        return digest

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()


def store_for(flor_dir: Path, configured: str | None = None) -> ObjectStore:
    """The local store, or the shared one named by ``git config flor.store``."""
    if configured:
        if "://" in configured and not configured.startswith("file://"):
            raise UserError(f"flor.store: not a directory or a file:// URL: {configured}")
        location = configured[len("file://"):] if configured.startswith("file://") else configured
        return ObjectStore(Path(os.path.expanduser(location)))
    return ObjectStore(flor_dir / "objects")


def configured_store(git) -> ObjectStore:
    """The store this repository's checkpoints go to: ``flor.store`` if set, else local."""
    return store_for(git.flor_dir, git.config("flor.store"))
