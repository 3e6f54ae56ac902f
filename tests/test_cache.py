"""Reading the cache only reads: folding a crashed run's journal is a step of its own,
which the read commands take before reading."""

from __future__ import annotations

import contextlib
from pathlib import Path

from flor_cli.storage import cache, journal, rows
from flor_cli.storage.git import Git


def orphan(git: Git) -> Path:
    """The journal of a run whose supervisor is gone (supervisor None: nobody folds it),
    started in the repository, as every run is (its cwd is recorded relative to it)."""
    with contextlib.chdir(git.root):
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


def test_a_run_whose_note_changes_keeps_its_id_against_a_newcomer_claiming_it(repo: Path
                                                                               ) -> None:
    """One sync takes in both a change to run A's note (a tag) and a pulled note of
    another commit claiming A's id: A keeps its id whatever order the commits sort in,
    and the newcomer is listed as ``<id>@<commit>``."""
    from synthetic import record_run

    from flor_cli.storage import notes

    git = Git(repo)
    mine = record_run(repo)
    with cache.connection(git) as db:
        (commit,) = db.execute("SELECT commit_id FROM runs").fetchone()
    tree = git.tree_of(commit)
    hostile, n = commit, 0
    while hostile >= commit:  # a commit that sorts before A's: its note is read first
        hostile, n = git.commit(tree, [], f"elsewhere {n}"), n + 1
    header = notes.render({"run": mine, "script": "train.py", "start": 1.0},
                          [{"t": "log", "s": 0, "n": "loss", "v": 666, "c": {}}])
    git.append_notes({commit: notes.event(notes.TAG, **{notes.NAME: "best"}), hostile: header},
                     "a tag here, a pulled note there")
    with cache.connection(git) as db:
        runs = dict(db.execute("SELECT run, commit_id FROM runs"))
        assert runs == {mine: commit, f"{mine}@{hostile[:10]}": hostile}
        assert db.execute("SELECT tag FROM tags WHERE run=?", (mine,)).fetchall() == [("best",)]
        assert 666 not in {v for (v,) in db.execute("SELECT value FROM logs WHERE run=?",
                                                    (mine,))}


def test_the_runs_table_is_read_newest_first_from_an_index(repo: Path) -> None:
    """`flor log` at 100,000 runs spent half its time sorting the wide rows by start;
    with the index, `--limit 10` reads ten runs and nothing is sorted."""
    with cache.connection(Git(repo), readonly=True) as db:
        plan = db.execute("EXPLAIN QUERY PLAN SELECT * FROM runs_wide LIMIT 10").fetchall()
    steps = " / ".join(row[-1] for row in plan)
    assert "runs_start" in steps and "TEMP B-TREE" not in steps, steps


def test_a_run_id_claimed_in_both_halves_of_a_parallel_rebuild_is_told_apart(
        repo: Path, monkeypatch) -> None:
    """A rebuild builds half of the notes in a second process; two notes claiming one
    run id, one in each half, are two runs (the second as ``<id>@<commit>``), as in a
    rebuild in one process, never one run mixing both notes' values."""
    from synthetic import record_run

    from flor_cli.storage import notes

    git = Git(repo)
    mine = record_run(repo)
    with cache.connection(git) as db:
        (commit,) = db.execute("SELECT commit_id FROM runs").fetchone()
    tree, other, n = git.tree_of(commit), commit, 0
    while other <= commit:  # sorts after mine: in the second half
        other, n = git.commit(git.tree_of(commit), [], f"elsewhere {n}"), n + 1
    git.append_notes({other: notes.render(
        {"run": mine, "script": "train.py", "start": 1.0},
        [{"t": "log", "s": 0, "n": "loss", "v": 666, "c": {}}])}, "a pulled note")
    cache.path_of(git).unlink()
    monkeypatch.setattr(cache, "_SAMPLE", 1)  # a helper process for as few as 2 notes
    monkeypatch.setattr(cache, "_PARALLEL_BYTES", 0)
    with cache.connection(git) as db:
        runs = dict(db.execute("SELECT run, commit_id FROM runs"))
        assert runs == {mine: commit, f"{mine}@{other[:10]}": other}
        values = [v for (v,) in db.execute("SELECT value FROM logs WHERE run=?", (mine,))]
        assert values and 666 not in values


def test_marking_current_values_reads_only_the_rows_just_inserted(repo: Path) -> None:
    """mark_current and the batch's scan for replayed rows work on a rowid range; at
    100,000 runs SQLite preferred the logs indexes and read every row of a name (or
    every row): 0.43 s per streamed run, 0.05 s per replayed run and name."""
    from synthetic import record_run

    git = Git(repo)
    record_run(repo)
    statements: list[str] = []
    with cache.connection(git) as db:
        first = db.execute("SELECT min(rowid) FROM logs").fetchone()[0]
        (run,) = db.execute("SELECT run FROM runs").fetchone()
        db.execute("INSERT INTO replays VALUES (?, 'rp1', '[]', 'skip', 1.0, 2.0, 'ok')", (run,))
        db.execute("UPDATE logs SET rp = 'rp1' WHERE rowid = ?", (first,))
        db.set_trace_callback(statements.append)
        rows.mark_current(db, run, first)
        rows.mark_current(db, run, first, end=first + 5)
        rows.mark_replayed(db, first)
        db.set_trace_callback(None)
        for sql in statements:
            plan = " / ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql))
            if "logs" in sql:
                assert "INTEGER PRIMARY KEY (rowid>" in plan and "INDEX logs_" not in plan, (
                    sql, plan)
    assert sum("UPDATE" in sql for sql in statements) >= 2  # the updates were checked too


def test_a_run_whose_header_its_reader_would_skip_is_refused_before_it_starts(
        tmp_path: Path, monkeypatch) -> None:
    """The note decoder skips a header whose cwd leaves the repository, and the fold of
    a journal without a header deletes it: such a run (begun from outside the
    repository, only through the API) would be lost at its end. It is refused at once."""
    import pytest
    from conftest import make_repo

    from flor_cli.errors import UserError

    repo = make_repo(tmp_path / "repo", files={"train.py": "print(1)\n"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="working directory"):
        journal.begin(Git(repo), "train.py", [], {})
    assert not list((repo / ".git" / "flor" / "journals").glob("*"))


def test_summaries_made_as_rows_go_in_equal_what_sql_computes_from_the_rows() -> None:
    """A run without replayed values is summed up from its rows in Python as they go in
    (no read back); SQL's summarize() must agree on every kind of value SQLite keeps."""
    import math
    import sqlite3

    from flor_cli.storage import notes

    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(cache.SCHEMA)
    cache._create_bulk_indexes(db)
    series = {
        "floats": [0.1, 0.2, 0.30000000000000004, 1e-300, 7.5],
        "cancelling": [1e16, 1.0, -1e16, 3.0],  # summed in order, as SQLite does
        "mixed": [3, 2.5, True, -1, 2 ** 62, 0.1],
        "nan": [float("nan"), 1.5, float("nan"), -2.0],
        "text": ["b", 2, "ä", None, "a", 1.0],
        "objects": [[1, 2], {"k": 1}, 4, None],
        "big": [2 ** 70, 5, -(2 ** 64)],  # not 64-bit: bound as text
        "only_none": [None, None],
        "one": [42],
    }
    records = [{"t": "arg", "n": "lr", "v": 0.1, "s": 0}]
    seq = 1
    for step in range(len(max(series.values(), key=len))):
        for name, values in series.items():
            if step < len(values):
                records.append({"t": "log", "n": name, "v": values[step], "s": seq,
                                "c": {"epoch": step}})
                seq += 1
    note = notes.RunNote("ab" * 20, {"run": "r1", "start": 1.0}, records)
    assert rows.insert(db, note, {}) == "r1"
    made = db.execute("SELECT * FROM summaries ORDER BY name").fetchall()
    assert {row[1] for row in made} == set(series)
    rows.summarize(db, ["r1"])
    computed = db.execute("SELECT * FROM summaries ORDER BY name").fetchall()

    def same(a, b) -> bool:
        return a == b or (isinstance(a, float) and isinstance(b, float)
                          and math.isnan(a) and math.isnan(b))

    for row, want in zip(made, computed):
        assert all(same(a, b) for a, b in zip(row, want)), (row, want)


def test_a_missing_cache_is_built_apart_and_renamed_into_place(repo: Path) -> None:
    """Built in a file of its own without a journal (no page written twice through the
    WAL), then renamed: the cache is complete or absent, and a killed build's file goes."""
    from synthetic import record_run

    g = Git(repo)
    run = record_run(repo, epochs=1, steps=3)
    flor_dir = repo / ".git" / "flor"
    (flor_dir / "cache-new-killed.db").write_bytes(b"half a build")
    with cache.connection(g) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [r for (r,) in db.execute("SELECT run FROM runs")] == [run]
        assert db.execute("SELECT count(*) FROM summaries").fetchone() == db.execute(
            "SELECT count(DISTINCT name) FROM logs").fetchone() != (0,)
    assert not list(flor_dir.glob("cache-new-*")) and not (flor_dir / "cache.db-wal").exists()
