"""One run in full: its note (the source of truth), its summaries, and two runs side by side."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from flor_cli.errors import UserError
from flor_cli.storage import cache, notes
from flor_cli.storage.git import Git
from flor_cli.storage.live import live_runs

SUMMARY_COLUMNS = ("name", "count", "last", "min", "max", "mean")
_TIMES = ("start", "end")  # header fields that are Unix times


@dataclass
class Shown:
    """What ``flor show`` prints of one run."""

    note: notes.RunNote  # header, replay headers, lifecycle; its records: see batches
    fields: list[tuple[str, Any]]  # the header, times as dates
    code: list[tuple[str, Any]]  # which code ran: shadow commit, the commit it was on
    args: list[tuple[str, Any]]
    summary: list[tuple] = field(default_factory=list)  # SUMMARY_COLUMNS, current values
    batches: Callable[[], Iterator[list[dict]]] = lambda: iter(())  # the records in order


@contextmanager
def load(git: Git, run: str, records: bool = True
         ) -> Iterator[tuple[notes.RunNote, Callable[[], Iterator[list[dict]]]]]:
    """The run's note and its records in order, a batch at a time; a running run's
    journal as it is so far.

    A note longer than :data:`notes.STREAM_BYTES` is read through
    :class:`notes.OrderedRecords`, in bounded memory: its note then holds only the args
    among its records, and the others are only readable with ``records``. A shorter one
    is decoded whole (faster), its records one batch.
    """
    live = [one for one in live_runs(git) if one.run == run]  # before the sync
    with cache.connection(git) as db:
        row = db.execute("SELECT commit_id FROM runs WHERE run=?", (run,)).fetchone()
    if row is None and live:  # its note holds its args alone, as a long note's does
        args = [r for batch in live[0].batches() for r in batch if r[notes.KIND] == notes.ARG]
        yield notes.RunNote("", live[0].header, args), live[0].batches
        return
    key = git.note_key(row[0]) if row else None
    if key and cache.note_bytes(git, key) > notes.STREAM_BYTES:
        source = f"the note of commit {row[0][:12]}"
        header, replays, events = notes.scan_headers(git.note_chunks(key), source)
        if header is not None:
            with notes.OrderedRecords(git.note_chunks(key), source, (notes.ARG,),
                                      spill=records) as ordered:
                yield notes.RunNote(row[0], header, ordered.kept, replays, events), \
                    ordered.batches
            return
    text = git.read_note(row[0]) if key else None
    note = notes.parse(row[0], text) if text else None
    if note is None:
        raise UserError(f"run {run} has no note (was refs/notes/flor rewritten?)")
    yield note, lambda: iter((note.records,))


@contextmanager
def show(git: Git, run: str, records: bool = True) -> Iterator[Shown]:
    """``with show(git, run) as shown``: the run, its records readable inside the block
    (unless ``records`` is false: see :func:`load`)."""
    with load(git, run, records) as (note, batches):
        header = note.header
        fields = [(k, date(v) if k in _TIMES else v) for k, v in header.items()
                  if k not in ("t", "v", "tree", "supervisor")]
        if isinstance(header.get("start"), (int, float)) and \
                isinstance(header.get("end"), (int, float)):
            fields.append(("duration", f"{header['end'] - header['start']:.1f} s"))
        code = [("shadow commit", note.commit or "(not yet: the run is running)"),
                ("on commit", header.get("head")), ("branch", header.get("branch")),
                ("script", header.get("script"))]
        args = [(r["n"], r.get("v")) for r in note.records if r.get("t") == "arg"]
        yield Shown(note, fields, code, args, summary(git, note.run), batches)


def summary(git: Git, run: str) -> list[tuple]:
    """Each logged name's current values summed up (:data:`SUMMARY_COLUMNS`), from the
    same ``summaries`` the runs table reads."""
    with cache.connection(git, readonly=True) as db:
        return db.execute("SELECT name, n, last, min, max, mean FROM summaries WHERE run=? "
                          "ORDER BY lvl, name", (run,)).fetchall()


def date(value: Any) -> Any:
    """A Unix time as a local date and time (to the second); anything else as it is,
    a number no calendar holds (1e308, NaN, from another clone's note) too."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        except (OverflowError, OSError, ValueError):
            pass
    return value


def diff(git: Git, run_a: str, run_b: str) -> tuple[list[str], list[tuple], str | None, str | None]:
    """Two runs side by side: rows (what, A, B, changed) for fields, args and each logged
    name's summaries; and the two shadow commits (None for a run still running)."""
    with show(git, run_a, records=False) as a, show(git, run_b, records=False) as b:
        pass  # what is compared is read: fields, args and summaries
    rows: list[tuple] = []

    def side_by_side(label: str, left: dict, right: dict) -> None:
        for key in dict.fromkeys([*left, *right]):
            x, y = left.get(key), right.get(key)
            rows.append((f"{label}{key}", x, y, "*" if x != y else ""))

    keep = ("script", "status", "start", "branch", "head")
    side_by_side("", {k: v for k, v in a.fields if k in keep},
                 {k: v for k, v in b.fields if k in keep})
    side_by_side("arg ", dict(a.args), dict(b.args))
    for column, index in (("last", 2), ("min", 3), ("max", 4), ("count", 1)):
        side_by_side(f"{column} ", {s[0]: s[index] for s in a.summary},
                     {s[0]: s[index] for s in b.summary})
    columns = ["what", a.note.run, b.note.run, "changed"]
    return columns, rows, a.note.commit or None, b.note.commit or None
