"""Reads of a long run (``flor show``, ``flor log --pivot``, ``flor export``) and the
batched read of a long note: memory bounded whatever the number of records (issue 14)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, make_repo
from synthetic import record_run

from flor_cli import output
from flor_cli.output import Output
from flor_cli.storage import notes


def test_tags_and_removal_of_a_note_read_in_batches_reach_the_cache(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(notes, "STREAM_BYTES", 1_000)  # every note is read in batches
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


# ``flor ARGS`` in a process whose address space is limited to what it uses once flor is
# imported plus a headroom: sizes scaled down (batches, pages, the note length above
# which a note is streamed) so that 80,000 records are "many".
UNDER_LIMIT = """
import os, resource, sys
import click, orjson, pickle, sqlite3, tabulate, tempfile
from flor_cli import main, output
from flor_cli.commands import export, log, show
from flor_cli.services import export as export_service, files, query, show as show_service
from flor_cli.storage import atomic, cache, notes
from flor_cli.storage.git import Git
Git(".").repo  # pygit2 loaded
notes.STREAM_BYTES, notes.BATCH_LINES, output.PAGE_ROWS = 1 << 20, 2_000, 1_000
from flor_cli.storage import journal
journal._BATCH_BYTES = 1 << 18  # a journal's lines, checked a batch at a time
sys.stdout = open(os.devnull, "w")
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + int(sys.argv[1]), hard))
main.main(sys.argv[2:])
"""
HEADROOM = 48 << 20


def _under_limit(repo: Path, *args: str, script: str = UNDER_LIMIT
                 ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, str(HEADROOM), *args], cwd=repo,
                          capture_output=True, text=True)


def _recorded(tmp_path_factory, **run) -> Path:
    """A repository with one synthetic run (``record_run``'s arguments), its cache built."""
    repo = make_repo(tmp_path_factory.mktemp("long") / "r", files={"train.py": "print(1)\n"})
    record_run(repo, **run)
    cli(repo, "log")
    return repo


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    """A run of 80,000 logged values (~7 MB of note)."""
    return _recorded(tmp_path_factory, epochs=4, steps=20_000, files=200)


@pytest.mark.parametrize("fmt", ["table", "json"])  # csv: as the pivot
def test_show_of_a_long_run_runs_in_bounded_memory(long_run: Path, fmt: str) -> None:
    shown = _under_limit(long_run, "show", "latest", "--format", fmt)
    assert shown.returncode == 0, shown.stderr[-2000:]


@pytest.mark.parametrize("args", [("--csv",), ("--limit", "1"), ("--where", "step > 10")])
def test_the_pivot_of_a_long_run_runs_in_bounded_memory(long_run: Path, args) -> None:
    pivoted = _under_limit(long_run, "log", "--pivot", *args)  # --where a loop: on rows
    assert pivoted.returncode == 0, pivoted.stderr[-2000:]


def test_export_of_many_files_runs_in_bounded_memory(tmp_path_factory, tmp_path: Path) -> None:
    """What export holds per file, not the files: their bytes are not read or written
    here (a millisecond or more each), only their paths made."""
    repo = _recorded(tmp_path_factory, epochs=1, steps=60_000, files=60_000)
    no_io = ("files.read = lambda *args: b'x'; atomic.write_whole = lambda target, data: None"
             "\nmain.main(sys.argv[2:])")
    exported = _under_limit(repo, "export", "sample", "-o", str(tmp_path / "out"),
                            script=UNDER_LIMIT.replace("main.main(sys.argv[2:])", no_io))
    assert exported.returncode == 0, exported.stderr[-2000:]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "nl", "table"])
def test_a_table_longer_than_a_page_is_printed_a_page_at_a_time(monkeypatch, fmt) -> None:
    monkeypatch.setattr(output, "PAGE_ROWS", 3)
    columns = ["run", "epoch", "lr", "loss"]
    rows = [(f"r{i}", i, 0.5, None if i % 2 else 1 / (i + 1)) for i in range(10)]
    out = Output(fmt=fmt, only_changed=True, precision=2)  # lr is the same in every row
    streamed = "\n".join(out.chunks(columns, iter(rows)))
    if fmt != "table":  # one document, as if rendered whole
        assert streamed == out.render(columns, rows)
    else:  # a table per page, each with its header
        each = Output(fmt=fmt, precision=2, drop=("lr",))  # what changed over all pages
        pages = [each.render(columns, rows[at:at + 3]) for at in range(0, 10, 3)]
        assert streamed.split("\n") == "\n".join(pages).split("\n")
    assert "lr" not in streamed and "0.33" in streamed


def test_show_reads_a_long_note_in_the_order_a_whole_read_gives(tmp_path: Path,
                                                               monkeypatch) -> None:
    import json

    from flor_cli.storage.git import Git

    monkeypatch.setattr(notes, "BATCH_LINES", 7)
    repo = make_repo(tmp_path / "r", files={"train.py": "print(1)\n"})
    run = record_run(repo, epochs=3, steps=10, files=3)
    other = record_run(repo, epochs=2, steps=10, lr=0.2)
    commit = next(c for c, _ in Git(repo).iter_notes()
                  if run in Git(repo).read_note(c).splitlines()[0])
    read_back: list[bool] = []  # whether each streamed read found its lines in order
    batches = notes.OrderedRecords.batches
    monkeypatch.setattr(notes.OrderedRecords, "batches",
                        lambda self: read_back.append(self._ordered) or batches(self))
    for shuffled in (False, True):
        if shuffled:  # lines out of (rp, s) order, as a merge leaves them
            Git(repo).append_notes({commit: "\n".join(json.dumps(
                {"t": "log", "s": -i, "n": "late", "v": i, "c": {}}) for i in range(5))}, "t")
        reads = [("show", run), ("show", run, "--json"), ("show", run, "--csv"),
                 ("diff", run, other)]
        whole = [cli(repo, *args).stdout for args in reads]
        monkeypatch.setattr(notes, "STREAM_BYTES", 100)
        streamed = [cli(repo, *args).stdout for args in reads]
        monkeypatch.setattr(notes, "STREAM_BYTES", 8 << 20)
        assert streamed == whole
        assert ("sample.txt" in whole[0]) and (",late," in whole[2]) == shuffled
    assert read_back == [True] * 3 + [False] * 3


def test_reads_of_a_long_run_still_running_run_in_bounded_memory(tmp_path: Path) -> None:
    """A run in progress is read from its journal, which every read command did whole
    (`cache.live_notes`): `flor log` during a run of 10^7 values needed gigabytes."""
    import fcntl
    import os

    from synthetic import write_journal

    repo = make_repo(tmp_path / "r", files={"train.py": "print(1)\n"})
    run, path = write_journal(repo, epochs=4, steps=8_000)
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as its writer holds it: running, not an orphan
    try:
        for args in (("log", "--csv"), ("show", run, "--format", "json")):
            read = _under_limit(repo, *args)
            assert read.returncode == 0, (args, read.stderr[-2000:])
        runs = cli(repo, "log", "--csv", "--columns", "run,status,loss").stdout.splitlines()
        assert runs[1].startswith(f"{run},running,"), runs
        assert path.exists()  # read, not folded
    finally:
        os.close(fd)
