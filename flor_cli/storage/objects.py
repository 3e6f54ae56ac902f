"""Content-addressed checkpoint store: ``<root>/ab/cdef...`` named by sha256 of the bytes.

Content addressing makes writes idempotent (two runs that save identical state share
a file) and lets a shared store be a plain directory or mount that many clones write to
without coordination: a name can only ever hold one content.

A digest comes from a note, and a note may come from someone else's clone; a store may be
shared with people who can write to it. So a name that is not 64 lowercase hex digits is
never turned into a path, and every object read is hashed again and refused unless it
matches its name (:meth:`ObjectStore.verify`): a swapped pickle is never unpickled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Collection, Iterable

from flor_cli.errors import UserError

_DIGEST = re.compile(r"[0-9a-f]{64}")


class BadObject(ValueError):
    """A digest that is not a sha256, or an object whose bytes do not hash to its name."""


def is_digest(text: object) -> bool:
    """Whether ``text`` can name an object: a sha256 in lowercase hex, nothing else."""
    return type(text) is str and _DIGEST.fullmatch(text) is not None


class ObjectStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise BadObject(f"not an object digest: {str(digest)[:80]!r}")
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
        """The object's bytes, only if they hash to ``digest`` (else BadObject)."""
        data = self.path(digest).read_bytes()
        self.verify(digest, [data])
        return data

    def has(self, digest: str) -> bool:
        return is_digest(digest) and self.path(digest).exists()

    @staticmethod
    def verify(digest: str, chunks: Iterable[bytes]) -> None:
        """Refuse content that does not hash to its name: the one check every read of
        an object goes through, whatever the store (a shared store's writers, or a disk
        that flipped a bit, must not get their bytes unpickled)."""
        import hashlib

        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        if h.hexdigest() != digest:
            raise BadObject(f"object {digest[:12]} does not match its digest (changed "
                            "after it was written): refusing to load it")

    def present(self, digests: Collection[str]) -> set[str]:
        """Which of ``digests`` the store holds, in as few filesystem calls as it takes.

        A few are looked up one by one; many (a cache rebuild: every checkpoint of every
        run) by listing the store's fan-out directories, one call per directory instead of
        one per object, when that reads fewer names than there are digests to test.
        """
        wanted = set(filter(is_digest, digests))  # anything else is no name in a store
        if len(wanted) < _LIST_AT_LEAST or self._estimated_size() > 4 * len(wanted):
            return {d for d in wanted if self.has(d)}
        found: set[str] = set()
        by_prefix: dict[str, list[str]] = {}
        for digest in wanted:
            by_prefix.setdefault(digest[:2], []).append(digest[2:])
        for prefix, rests in by_prefix.items():
            try:
                listed = set(os.listdir(self.root / prefix))
            except (FileNotFoundError, NotADirectoryError):
                continue
            found.update(prefix + rest for rest in rests if rest in listed)
        return found

    def _estimated_size(self) -> int:
        """Objects in the store, guessed from one fan-out directory (256 of them)."""
        try:
            sample = next(d for d in os.scandir(self.root) if d.is_dir() and len(d.name) == 2)
            return 256 * len(os.listdir(sample.path))
        except (StopIteration, FileNotFoundError, NotADirectoryError):
            return 0


_LIST_AT_LEAST = 512  # digests: below this, stat each one


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


def stores(git) -> tuple[ObjectStore, ObjectStore | None]:
    """The local checkpoint store, and the shared one when ``flor.store`` names another."""
    local = store_for(git.flor_dir)
    configured = git.config("flor.store")
    shared = store_for(git.flor_dir, configured) if configured else None
    if shared is not None and shared.root.resolve() == local.root.resolve():
        shared = None
    return local, shared
