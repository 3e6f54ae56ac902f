"""Notes history stays proportional to what matters: squash what is local, pack objects."""

from __future__ import annotations

from pathlib import Path

from conftest import git, make_repo
from synthetic import record_run

from flor_cli.services import sync
from flor_cli.storage import cache
from flor_cli.storage.git import NOTES_REF, Git


def _rows(repo: Path) -> list[tuple]:
    with cache.connection(Git(repo)) as db:
        return db.execute("SELECT run, name, seq, value FROM logs ORDER BY run, seq").fetchall()


def test_squash_keeps_every_record_and_what_the_remote_has(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    repo = make_repo(tmp_path / "a", files={"train.py": "print(1)\n"})
    git(repo, "remote", "add", "origin", str(remote))
    g = Git(repo)
    for _ in range(3):
        record_run(repo)
    sync.push(g, "origin")
    pushed = g.ref(NOTES_REF)
    for _ in range(3):
        record_run(repo)
    rows, tree = _rows(repo), g.notes_tree().id
    assert g.squash_notes("flor gc: squash") == (6, 4)  # the 3 pushed + 1 for the rest
    assert g.notes_tree().id == tree and _rows(repo) == rows
    assert [str(p) for p in g.repo[g.ref(NOTES_REF)].parent_ids] == [pushed]
    assert g.squash_notes("flor gc: squash") == (4, 4)  # nothing local left to squash
    sync.push(g, "origin")  # a fast-forward: no merge commit
    assert git(remote, "rev-list", "--count", NOTES_REF).strip() == "4"
    loose_before, loose_after = g.pack()
    assert loose_before > 0 and loose_after < loose_before
    assert _rows(repo) == rows


def test_squash_without_a_remote_leaves_one_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "a", files={"train.py": "print(1)\n"})
    for _ in range(4):
        record_run(repo)
    g = Git(repo)
    rows = _rows(repo)
    assert g.squash_notes("flor gc: squash") == (4, 1)
    assert _rows(repo) == rows


def test_flor_gc_squashes_local_history_and_packs(tmp_path: Path) -> None:
    """`flor gc` does both (dry run: says what it would do, changes nothing);
    `--keep-history` leaves the notes history alone."""
    from conftest import cli

    repo = make_repo(tmp_path / "a", files={"train.py": "print(1)\n"})
    for _ in range(4):
        record_run(repo)
    g = Git(repo)
    rows, tip = _rows(repo), g.ref(NOTES_REF)
    dry = cli(repo, "gc", "--dry-run").stdout
    assert "would squash 4 notes commit(s) into 1" in dry, dry
    assert "would pack" in dry and g.ref(NOTES_REF) == tip
    kept = cli(repo, "gc", "--keep-history").stdout
    assert "squash" not in kept and g.ref(NOTES_REF) == tip
    done = cli(repo, "gc").stdout
    assert "squashed 4 notes commit(s) into 1" in done, done
    assert "packed" in done and g.loose_objects()[0] == 0
    assert git(repo, "rev-list", "--count", NOTES_REF).strip() == "1"
    assert _rows(repo) == rows
    cache.path_of(g).unlink()  # the notes tree alone rebuilds the same cache
    assert _rows(repo) == rows
