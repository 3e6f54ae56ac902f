"""Reading the cache only reads: folding a crashed run's journal is a step of its own,
which the read commands take before reading."""

from __future__ import annotations

from pathlib import Path

from flor_cli.storage import cache, journal
from flor_cli.storage.git import Git


def orphan(git: Git) -> Path:
    """The journal of a run whose supervisor is gone (supervisor None: nobody folds it)."""
    return journal.begin(git, "train.py", [], {}, supervisor=None)


def test_connecting_to_the_cache_does_not_fold_orphaned_journals(repo: Path) -> None:
    git = Git(repo)
    path = orphan(git)
    with cache.connection(git) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    assert path.exists() and git.ref("refs/notes/flor") is None  # nothing was written
    assert len(journal.fold_orphans(git)) == 1 and not path.exists()
    with cache.connection(git) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("killed",)]


def test_connection_closes_the_database(repo: Path) -> None:
    with cache.connection(Git(repo), readonly=True) as db:
        db.execute("SELECT 1")
    try:
        db.execute("SELECT 1")
    except Exception as e:  # sqlite3.ProgrammingError: closed
        assert "closed" in str(e)
    else:
        raise AssertionError("the connection is still open")
