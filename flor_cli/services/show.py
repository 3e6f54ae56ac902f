"""One run's whole record, read from its note (the source of truth), not the cache."""

from __future__ import annotations

from flor_cli.errors import UserError
from flor_cli.storage import cache, notes
from flor_cli.storage.git import Git


def load(git: Git, run: str) -> notes.RunNote:
    with cache.connection(git) as db:
        row = db.execute("SELECT commit_id FROM runs WHERE run=?", (run,)).fetchone()
    text = git.read_note(row[0]) if row else None
    note = notes.parse(row[0], text) if text else None
    if note is None:
        raise UserError(f"run {run} has no note (was refs/notes/flor rewritten?)")
    return note
