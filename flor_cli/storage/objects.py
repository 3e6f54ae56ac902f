"""Content-addressed checkpoint store: ``<root>/ab/cdef...`` named by sha256 of the bytes.

Content addressing makes writes idempotent (two runs that save identical state share
a file) and lets a shared store be a plain directory or mount that many clones write to
without coordination: a name can only ever hold one content.

A digest comes from a note, and a note may come from someone else's clone; a store may be
shared with people who can write to it. So a name that is not 64 lowercase hex digits is
never turned into a path, and every object read is hashed again and refused unless it
matches its name (:meth:`ObjectStore.verify`): a swapped pickle is never unpickled.

``git config flor.store`` picks where objects are shared:

* unset: ``.git/flor/objects`` only;
* a directory or ``file://`` URL (a mount, NFS): runs write there directly;
* any other fsspec URL (``s3://bucket/prefix``, ``gs://...``): runs write to
  ``.git/flor/objects``, ``flor push`` uploads (:meth:`ObjectStore.upload`), and a read
  that misses locally fetches the object from the URL (verified, as every read) into the
  local directory, which is then its cache. Credentials and endpoints come from the
  backend's own environment (``AWS_*`` for S3, including ``AWS_ENDPOINT_URL``); flor
  never stores them. fsspec and its backends are imported only when such a store is set.
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


class MissingObject(FileNotFoundError):
    """An object in no store this clone reads: deleted (by hand, by another clone's
    ``flor gc`` on a shared store) or never shared. A replay re-executes instead."""

    def __init__(self, digest: str, where: str):
        super().__init__(f"{where}: no object {digest}")
        self.digest = digest


def is_digest(text: object) -> bool:
    """Whether ``text`` can name an object: a sha256 in lowercase hex, nothing else."""
    return type(text) is str and _DIGEST.fullmatch(text) is not None


class ObjectStore:
    def __init__(self, root: Path, remote: str | None = None):
        self.root = Path(root)
        self.remote = remote  # an fsspec URL backing this directory (fetched on a miss)
        self._remote: Remote | None = None

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise BadObject(f"not an object digest: {str(digest)[:80]!r}")
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        # imported here: every flor run and training script loads this module, few write
        import hashlib

        from flor_cli.storage.atomic import write_whole

        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():  # readers never see a half-written object
            write_whole(target, data)  # readable as the user's files are (a shared store)
        return digest

    def get(self, digest: str) -> bytes:
        """The object's bytes, only if they hash to ``digest`` (else BadObject); fetched
        from the remote store on a local miss, and kept locally once verified; in no
        store: MissingObject."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            if self.remote is None:
                raise MissingObject(digest, str(self.root)) from None
            data = self.remote_store().read(digest)
            self.verify(digest, [data])
            self.put(data)
            return data
        self.verify(digest, [data])
        return data

    def has(self, digest: str) -> bool:
        """Whether a read of ``digest`` can succeed: here, or in the remote store."""
        return is_digest(digest) and (self.path(digest).exists() or (
            self.remote is not None and self.remote_store().has(digest)))

    def remote_store(self) -> "Remote":
        if self._remote is None:
            assert self.remote is not None
            self._remote = Remote(self.remote)
        return self._remote

    def upload(self, digests: Iterable[str]) -> tuple[int, list[BadObject]]:
        """Upload the local objects among ``digests`` that the remote store lacks, each
        verified first: how many were sent, and the damaged ones, which are not (a bad
        object is never spread to everyone)."""
        remote = self.remote_store()
        sent, bad = 0, []
        for digest in dict.fromkeys(filter(is_digest, digests)):
            path = self.path(digest)
            if path.exists() and not remote.has(digest):
                try:
                    with open(path, "rb") as f:
                        self.verify(digest, iter(lambda: f.read(1 << 20), b""))
                except BadObject as e:
                    bad.append(e)
                    continue
                remote.put_file(digest, path)
                sent += 1
        return sent, bad

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
        one per object, when that reads fewer names than there are digests to test. A
        remote-backed store answers for its remote (one listing), so a local object it
        lacks counts as not shared yet.
        """
        wanted = set(filter(is_digest, digests))  # anything else is no name in a store
        if self.remote is not None:  # what the remote holds; local copies are a cache
            return {d for d in wanted if self.remote_store().has(d)}
        if len(wanted) < _LIST_AT_LEAST or self._estimated_size() > 4 * len(wanted):
            root = str(self.root)  # os.path on text: pathlib was most of 4,000 lookups
            return {d for d in wanted if os.path.exists(f"{root}/{d[:2]}/{d[2:]}")}
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


class Remote:
    """An fsspec location holding objects in the same ``ab/cdef...`` layout."""

    def __init__(self, url: str):
        self.url = url
        self.fs, self.base = _filesystem(url)
        self._listed: set[str] | None = None

    def key(self, digest: str) -> str:
        return f"{self.base.rstrip('/')}/{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        # One listing answers every question a plan or a push asks (hundreds of
        # objects), where a request per object would cost a round trip each.
        if self._listed is None:
            try:
                found = self.fs.find(self.base)
            except FileNotFoundError:
                found = []
            self._listed = {"".join(p.rstrip("/").split("/")[-2:]) for p in found}
        return digest in self._listed

    def read(self, digest: str) -> bytes:
        try:
            return self.fs.cat_file(self.key(digest))
        except FileNotFoundError:
            raise MissingObject(digest, self.url) from None

    def put_file(self, digest: str, path: Path) -> None:
        # Object stores make an upload visible whole or not at all: no temp-and-rename.
        self.fs.put_file(str(path), self.key(digest))
        if self._listed is not None:
            self._listed.add(digest)


def _filesystem(url: str):
    try:
        import fsspec
    except ImportError:
        raise UserError(f"flor.store {url}: a remote store needs fsspec "
                        "(pip install 'flor-cli[s3]')") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise UserError(f"flor.store {url}: {e}") from None


def is_remote(location: str) -> bool:
    """Whether a ``flor.store`` value names an fsspec URL other than a local path."""
    return "://" in location and not location.startswith("file://")


def store_for(flor_dir: Path, configured: str | None = None) -> ObjectStore:
    """The local store, a shared directory, or the local store backed by a remote URL."""
    if configured and is_remote(configured):
        _check_protocol(configured)
        return ObjectStore(flor_dir / "objects", remote=configured)
    if configured:
        location = configured[len("file://"):] if configured.startswith("file://") else configured
        return ObjectStore(Path(os.path.expanduser(location)))
    return ObjectStore(flor_dir / "objects")


def _check_protocol(url: str) -> None:
    """A store nobody can reach must fail before a run writes anything: fsspec must
    know the protocol. The backend itself (s3fs...) is imported when first used."""
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:
        raise UserError(f"flor.store {url}: a remote store needs fsspec "
                        "(pip install 'flor-cli[s3]')") from None
    protocol = url.split("://", 1)[0]
    if protocol not in known_implementations and protocol not in registry:
        raise UserError(f"flor.store {url}: unknown storage protocol {protocol!r}")


def configured_store(git) -> ObjectStore:
    """The store this repository's checkpoints go to: ``flor.store`` if set, else local."""
    return store_for(git.flor_dir, git.config("flor.store"))


def stores(git) -> tuple[ObjectStore, ObjectStore | None]:
    """The local checkpoint store, and the shared one when ``flor.store`` names another
    (a remote one is the local directory backed by its URL)."""
    local = store_for(git.flor_dir)
    configured = git.config("flor.store")
    shared = store_for(git.flor_dir, configured) if configured else None
    if (shared is not None and shared.remote is None
            and shared.root.resolve() == local.root.resolve()):
        shared = None
    return local, shared
