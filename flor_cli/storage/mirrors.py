"""flor's mirrors of a remote's runs, and merging them into the local refs.

A mirror (``refs/remotes/<remote>/flor.shadow``, ``refs/notes/remotes/<remote>/flor``)
only ever holds the remote's state: fetches may force it, and the local refs are moved
by merging it in, never overwritten, so no local record can be lost.

Two ways fill the mirrors: ``flor pull``, and a plain ``git fetch``/``git pull`` once
``flor hooks install`` has added :func:`fetch_refspecs` to the remote (git runs no hook
after a fetch, nor a post-merge when the branch is already up to date). What a fetch
brought is merged by the next flor command (:func:`merge_fetched`); the tips merged last
are kept in ``.git/flor/mirrors-merged``, so a command with nothing new to merge costs
one ``git for-each-ref``.
"""

from __future__ import annotations

from flor_cli.storage.atomic import write_whole
from flor_cli.storage.git import NOTES_REF, SHADOW_REF, Git

_NOTES_MIRRORS = "refs/notes/remotes/*/flor"
_STAMP = "mirrors-merged"


def tracking_refs(remote: str) -> dict[str, str]:
    """Each flor ref -> where flor mirrors the remote's copy of it."""
    return {SHADOW_REF: f"refs/remotes/{remote}/flor.shadow",
            NOTES_REF: f"refs/notes/remotes/{remote}/flor"}


def fetch_refspecs(remote: str) -> list[str]:
    """Fetch refspecs that bring the remote's runs into flor's mirrors of it (forced
    there only: a mirror holds nothing but the remote's state). Each ends in ``*``: a
    refspec without one fails every ``git fetch`` from a remote that has no runs yet,
    while ``refs/notes/flor*`` matches ``refs/notes/flor`` or nothing."""
    return [f"+{ref}*:{mirror}*" for ref, mirror in tracking_refs(remote).items()]


def merge(git: Git, remote: str) -> None:
    """Merge the remote's mirrors into flor.shadow (fast-forward or merge commit) and the
    notes (union of lines); the code first, so every merged note annotates a local commit."""
    mirrors = tracking_refs(remote)
    shadow = git.ref(mirrors[SHADOW_REF])
    if shadow:
        git.merge_branch(SHADOW_REF, shadow, f"flor: merge {remote}/flor.shadow")
    notes = git.ref(mirrors[NOTES_REF])
    if notes:
        git.merge_notes(notes, f"flor: merge runs from {remote}")
        _remember(git, {mirrors[NOTES_REF]: notes})


def merge_fetched(git: Git) -> list[str]:
    """Merge the notes mirrors that moved since they were last merged (a ``git fetch``
    with flor's refspecs); returns the remotes merged."""
    tips = git.refs_matching(_NOTES_MIRRORS)
    seen = _merged(git)
    remotes = [ref.removeprefix("refs/notes/remotes/").removesuffix("/flor")
               for ref, tip in tips.items() if seen.get(ref) != tip]
    for remote in remotes:
        merge(git, remote)
    return remotes


def _merged(git: Git) -> dict[str, str]:
    try:
        text = (git.flor_dir / _STAMP).read_text()
    except OSError:
        return {}
    return dict(line.split(" ", 1)[::-1] for line in text.splitlines() if " " in line)


def _remember(git: Git, tips: dict[str, str]) -> None:
    """Record merged mirror tips (atomically: concurrent commands may merge at once)."""
    merged = {**_merged(git), **tips}
    text = "".join(f"{tip} {ref}\n" for ref, tip in merged.items())
    write_whole(git.flor_dir / _STAMP, text.encode())
