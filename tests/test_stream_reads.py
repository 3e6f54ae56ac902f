"""Reads of a long run (``flor show``, ``flor log --pivot``, ``flor export``) and the
batched read of a long note: memory bounded whatever the number of records (issue 14)."""

from __future__ import annotations

from pathlib import Path

from conftest import cli, make_repo
from synthetic import record_run

from flor_cli.storage import cache


def test_tags_and_removal_of_a_note_read_in_batches_reach_the_cache(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache, "_STREAM_BYTES", 1_000)  # every note is read in batches
    repo = make_repo(tmp_path / "r", files={"train.py": "print(1)\n"})
    kept, removed = record_run(repo, epochs=2, steps=20), record_run(repo, epochs=2, steps=20)
    cli(repo, "tag", kept, "best")
    cli(repo, "tag", kept, "-m", "the good one")
    cli(repo, "rm", removed)
    for rebuilt in (False, True):  # the incremental sync, then a cold rebuild
        if rebuilt:
            (repo / ".git" / "flor" / "cache.db").unlink()
        runs = cli(repo, "log", "--format", "csv", "--columns", "run,tags,note").stdout
        assert runs.splitlines()[1:] == [f"{kept},best,the good one"], runs
        listed = cli(repo, "rm", "--list", "--csv").stdout.splitlines()[1:]
        assert [line.split(",")[0] for line in listed] == [removed], listed
