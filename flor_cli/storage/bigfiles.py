"""Untracked files too big to snapshot: left out of the run's tree, listed in its note.

An untracked 1 GB data file beside the script made every ``flor run`` hash it into the
snapshot before the script started (70+ s) and grew ``.git`` (and every ``flor push``) by
as much. Untracked, not-ignored files of at least ``git config flor.maxFileSize`` bytes
(default 50 MiB, with git's k/m/g suffixes; ``0`` turns the limit off) are left out of
the snapshot. The run's header lists each (``big``: path, size, mtime, hash), and replay
links them into its worktree as it does ignored paths, warning when one changed.

The hash must not cost what the snapshot did: files up to 64 MiB are hashed whole
(``sha256:...``); bigger ones by their size and 16 evenly spaced 256 KiB samples
(``sample-sha256:...``, as imohash does), which reads 4 MiB whatever the size. Hashes
are remembered by (path, size, mtime) in ``.git/flor/bigfiles.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flor_cli.errors import UserError
from flor_cli.sizes import size_text
from flor_cli.storage.atomic import write_whole

if TYPE_CHECKING:
    from flor_cli.storage.git import Git

CONFIG = "flor.maxFileSize"
DEFAULT_MAX_BYTES = 50 * 2**20
WHOLE_BYTES = 64 * 2**20
_SAMPLES, _SAMPLE = 16, 256 * 2**10
_CACHE = "bigfiles.json"


def max_bytes(git: Git) -> int:
    """The threshold: ``git config flor.maxFileSize``, else the default; 0: no limit."""
    try:
        value = git.config_size(CONFIG)
    except ValueError:
        value = -1
    if value is None:
        return DEFAULT_MAX_BYTES
    if value < 0:
        raise UserError(f"{CONFIG} = {git.config(CONFIG)!r}: not a size (bytes, or with k, "
                        f"m or g)")
    return value


def scan(git: Git) -> list[dict]:
    """The untracked, not-ignored files at or over the threshold, with size and mtime;
    says on stderr which they are (one line), once per version of a file: a version
    already hashed into ``bigfiles.json`` was announced by an earlier run."""
    paths = git.untracked_files()
    if not paths:
        return []
    limit = max_bytes(git)
    if limit == 0:
        return []
    big = []
    for rel in paths:
        try:
            st = os.lstat(git.root / rel)
        except OSError:
            continue  # gone, or unreadable: git add reports what matters
        if stat.S_ISREG(st.st_mode) and st.st_size >= limit:
            big.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
    known = _load(git)
    news = [e for e in big if _key(e) not in known]  # said once per version of a file
    if news:
        listed = ", ".join(f"{e['path']} ({size_text(e['size'])})" for e in news)
        _say(f"flor: left out of the snapshot (untracked, over {size_text(limit)}, see git "
             f"config {CONFIG}): {listed}")
    return big


def hashed(git: Git, entries: list[dict]) -> list[dict]:
    """``entries`` with their hash (None for a file that is gone or unreadable)."""
    known = _load(git)
    result = []
    for entry in entries:
        key = _key(entry)
        if key not in known:
            known[key] = file_hash(git.root / entry["path"])
        result.append({**entry, "hash": known[key]})
    _save(git, known)
    return result


def _key(entry: dict) -> str:
    """A version of a file, as remembered in ``bigfiles.json``: path, size and mtime."""
    return f"{entry['path']}\0{entry['size']}\0{entry['mtime']}"


def file_hash(path: Path) -> str | None:
    """``sha256:<hex>`` of the whole file, or ``sample-sha256:<hex>`` of its size and
    samples when it is bigger than :data:`WHOLE_BYTES`."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= WHOLE_BYTES:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                return f"sha256:{digest.hexdigest()}"
            digest.update(str(size).encode())
            step = (size - _SAMPLE) // (_SAMPLES - 1)
            for i in range(_SAMPLES):
                f.seek(i * step)
                digest.update(f.read(_SAMPLE))
            return f"sample-sha256:{digest.hexdigest()}"
    except OSError:
        return None


def changed(git: Git, entries: list[dict]) -> list[str]:
    """Which recorded big files are missing or differ today (by sha256)."""
    current = {}
    for entry in entries:
        try:
            st = os.stat(git.root / entry["path"])
        except OSError:
            current[entry["path"]] = None
            continue
        current[entry["path"]] = {"path": entry["path"], "size": st.st_size,
                                  "mtime": st.st_mtime}
    today = {e["path"]: e["hash"]
             for e in hashed(git, [e for e in current.values() if e is not None])}
    return [e["path"] for e in entries
            if today.get(e["path"]) is None or today[e["path"]] != e.get("hash")]


def recorded(git: Git, big: list[dict] | None) -> tuple[list[str], list[str]]:
    """For replaying a run: the big files its header lists (``big``, paths to link into
    the worktree) and a warning line for each that is missing or changed today.
    The header comes from a note, which may have been pulled from anyone: its decoder
    (``notes.problem``) took only plain relative paths inside the repository."""
    entries = big or []
    paths = list(dict.fromkeys(e["path"] for e in entries))
    warnings = [f"flor: warning: {path} changed since the run was recorded (or is gone); "
                f"the replay reads it as it is now" for path in changed(git, entries)]
    return paths, warnings


def _load(git: Git) -> dict[str, str | None]:
    try:
        return json.loads((git.flor_dir / _CACHE).read_text())
    except (OSError, ValueError):
        return {}


def _save(git: Git, known: dict[str, str | None]) -> None:
    try:
        write_whole(git.flor_dir / _CACHE, json.dumps(known).encode())
    except OSError:
        pass  # a cache: the next run hashes again


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
