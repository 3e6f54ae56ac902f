"""``flor push`` / ``flor pull``: share runs through any git remote.

What travels is git's own: the shadow branch (the code of every run) and the notes (every
run's records). Pushing never forces: a remote that moved is pulled, merged and pushed
again. Pulling fetches into flor's mirrors of the remote (``refs/remotes/<remote>/
flor.shadow`` and ``refs/notes/remotes/<remote>/flor``, which only ever mirror the remote)
and merges them into the local refs, so no local record can be lost: notes merge by union
of their JSONL lines, the shadow branch by fast-forward or a merge commit.

Checkpoints (and logged images and files) are too big for git. They stay in
``.git/flor/objects`` unless ``git config flor.store`` names a shared store: a directory, a
mount or a ``file://`` URL, to which ``push`` copies the objects of the runs it ships, or
any other fsspec URL (``s3://bucket/prefix``), to which it uploads them; other clones then
replay them and see their images from there.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from flor_cli.errors import UserError
from flor_cli.storage import cache, media
from flor_cli.storage.atomic import aside
from flor_cli.storage.git import NOTES_REF, SHADOW_REF, Git
from flor_cli.storage.journal import fold_orphans
from flor_cli.storage.media import MEDIA_TYPES
from flor_cli.storage.mirrors import merge as merge_mirrors
from flor_cli.storage.mirrors import tracking_refs
from flor_cli.storage.objects import BadObject, ObjectStore, stores
from flor_cli.storage.rows import digests

# A push that loses a race with another pusher merges what the remote gained and tries
# again after a random wait that doubles up to a cap, so N pushers at once all get
# through in about N rounds; only a remote that keeps moving for this long is an error.
PUSH_PATIENCE_S = 600.0
_BACKOFF_FIRST_S, _BACKOFF_CAP_S = 0.02, 1.0


class NothingToPull(UserError):
    """The remote has no flor refs: nobody has pushed runs there yet."""


@dataclass
class PushResult:
    remote: str
    refs: list[str]     # the refs shipped
    copied: int         # objects (checkpoints, logged files) copied to the shared store
    store: str | None   # the shared store, when one is configured


@dataclass
class PullResult:
    remote: str
    changed: int        # runs added or updated locally


def default_remote(git: Git) -> str:
    """The current branch's upstream remote, else ``origin``."""
    return git.upstream_remote() or "origin"


def push(git: Git, remote: str) -> PushResult:
    """Ship flor.shadow and the notes to ``remote``, merging first when it moved."""
    _check_remote(git, remote)
    if git.ref(SHADOW_REF) is None:
        raise UserError("nothing to push: no runs recorded here (flor run SCRIPT records one)")
    fold_orphans(git)  # crashed runs' journals become notes, so they travel too
    with cache.connection(git) as db:
        store, copied = _share_objects(git, db)
    deadline = time.monotonic() + PUSH_PATIENCE_S
    for attempt in itertools.count():
        tips = {ref: tip for ref in (SHADOW_REF, NOTES_REF) if (tip := git.ref(ref))}
        if not git.push_refs(remote, [f"{tip}:{ref}" for ref, tip in tips.items()]):
            for ref, tip in tips.items():  # the remote has them now: so do its mirrors
                git.set_ref(tracking_refs(remote)[ref], tip, f"flor: pushed to {remote}")
            return PushResult(remote, list(tips), copied, store)
        if time.monotonic() > deadline:
            raise UserError(f"could not push to {remote}: it kept moving; try again")
        time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2 ** attempt)))
        _merge_remote(git, remote)  # the cache catches up at the next read


def pull(git: Git, remote: str) -> PullResult:
    """Fetch the remote's runs into flor's mirrors of it and merge them into the local refs."""
    _check_remote(git, remote)
    notes_before = git.ref(NOTES_REF)
    _merge_remote(git, remote)
    notes_after = git.ref(NOTES_REF)
    changed = (0 if notes_after == notes_before
               else sum(1 for _ in git.changed_notes(notes_before, notes_after)))
    with cache.connection(git) as db:  # what was missing may have reached the shared
        cache.refresh_availability(git, db, "missing")  # store with these runs
    return PullResult(remote, changed)


def _merge_remote(git: Git, remote: str) -> None:
    """Fetch the remote's flor refs into their mirrors and merge them into the local ones."""
    mirrors = tracking_refs(remote)
    present = git.remote_refs(remote, mirrors)
    if not present:
        raise NothingToPull(f"remote {remote} has no flor runs (nobody pushed any there)")
    # Forced only into the mirrors, which hold nothing but the remote's state; the
    # local refs are moved by merging, never overwritten.
    git.fetch_refs(remote, [f"+{ref}:{mirrors[ref]}" for ref in present])
    merge_mirrors(git, remote)


def replayable(git: Git, run_ids: Iterable[str]) -> dict[str, bool]:
    """Whether each run can be replayed here: every object of every checkpoint it recorded
    is in the local or the shared store (a run without checkpoints replays from scratch).
    """
    result = dict.fromkeys(run_ids, True)
    if not result:
        return result
    with cache.connection(git) as db:
        marks = ",".join("?" * len(result))
        for run, missing in db.execute(
                f"SELECT run, missing FROM availability WHERE run IN ({marks})", list(result)):
            result[run] = missing == 0
    return result


def _check_remote(git: Git, remote: str) -> None:
    if remote not in git.remotes():
        raise UserError(f"no such remote: {remote} (see git remote -v)")


def _share_objects(git: Git, db) -> tuple[str | None, int]:
    """Copy to the shared store the local objects it lacks: the checkpoints of the runs
    whose availability counts unshared ones (so a push stats nothing else), and logged
    files; uploaded when the store is remote, copied when it is a directory."""
    local, shared = stores(git)
    if shared is None:
        return (str(local.root) if git.config("flor.store") else None), 0
    if shared.remote is not None:
        copied, bad = shared.upload(_unshared_digests(db))
        for e in bad:
            print(f"flor: not shared: {e}", file=sys.stderr)
        db.execute("UPDATE availability SET unshared = 0 WHERE unshared > 0")
        return shared.remote, copied
    copied = 0
    for sha in dict.fromkeys(_unshared_digests(db)):
        if not shared.has(sha) and local.has(sha):
            try:
                _copy_object(local, shared, sha)
            except BadObject as e:
                print(f"flor: not shared: {e}", file=sys.stderr)
                continue
            copied += 1
    db.execute("UPDATE availability SET unshared = 0 WHERE unshared > 0")
    return str(shared.root), copied


def _unshared_digests(db) -> Iterator[str]:
    """The objects the shared store may lack: checkpoints' and logged images' and files'."""
    for (objs,) in db.execute("SELECT objs FROM checkpoints WHERE run IN "
                              "(SELECT run FROM availability WHERE unshared > 0)"):
        yield from digests(objs)
    marks = ",".join("?" * len(MEDIA_TYPES))
    for (value,) in db.execute(f"SELECT value FROM logs WHERE type IN ({marks})", MEDIA_TYPES):
        ref = media.parse(value)
        if ref is not None:
            yield ref.sha


def _copy_object(src: ObjectStore, dst: ObjectStore, sha: str) -> None:
    """Copy by file, not through memory (checkpoints can be gigabytes); atomic by rename,
    so a clone reading the shared store never sees half an object; verified on the way,
    so a damaged local object is never spread to everyone (BadObject); readable by the
    store's other users as any file the user writes is."""
    with open(src.path(sha), "rb") as source, aside(dst.path(sha)) as copy:
        def chunks():
            while chunk := source.read(1 << 20):
                copy.write(chunk)
                yield chunk

        ObjectStore.verify(sha, chunks())
