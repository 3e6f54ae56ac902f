"""Run journals: what a running script has recorded, on disk, before it becomes a note.

A run appends its records to ``.git/flor/journals/<run>.jsonl`` as it goes (flushed
every 50 ms, see :mod:`flor_cli.runtime.session`) and holds an exclusive ``flock`` on the file while it lives. When
the run ends, the journal is *folded*: its tree becomes a commit on ``flor.shadow`` and its
lines become that commit's note. A journal whose lock can be taken and whose supervisor
(``flor run``) is gone belongs to a dead run (crash, SIGKILL): any flor command folds it,
so at most the last unflushed 50 ms are lost.

The journal's first line is the run header; an ``end`` line (written on a clean exit)
and ``commit`` lines (written during folding, so a fold interrupted half-way resumes on
the same shadow commit) are folded into the header rather than copied to the note.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from operator import itemgetter
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from flor_cli.storage.git import Git

from flor_cli.storage import notes
from flor_cli.storage.notes import COMMIT, END, KIND, LOST, RUN, RUN_ID, SEQ

try:
    from fcntl import LOCK_EX, LOCK_NB, LOCK_UN, flock
except ImportError:  # Windows: `import flor` works; recording is supported on Linux/macOS
    LOCK_EX, LOCK_NB, LOCK_UN = 2, 4, 8

    def flock(fd: int, operation: int) -> None:
        """No advisory locks here: a journal counts as orphaned only once its
        supervisor process is gone (see ``_is_orphan``)."""

# This module is imported by every recording training process (for JournalWriter), so
# what only folding needs (the git layer) is imported by ``fold``, or ahead of it by
# ``load_fold``.


def new_id(at: float | None = None) -> str:
    """An id for a run or a replay: sorts by local time, made unique by 24 random bits."""
    import time

    return time.strftime("%Y%m%d-%H%M%S", time.localtime(at)) + "-" + os.urandom(3).hex()


def journal_dir(flor_dir: Path) -> Path:
    return flor_dir / "journals"


class JournalWriter:
    """Append-only writer holding the journal's lock for as long as the run lives."""

    def __init__(self, path: Path, header: dict | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        flock(self.fd, LOCK_EX)
        if header is not None:
            self.write([json.dumps(header)])

    def write(self, lines: Iterable[str]) -> None:
        """Append ``lines`` whole: os.write may write less than it is given (a nearly
        full disk), and what it left out is written next, or fails with OSError (the
        session's fallback takes that batch), never returns as if written."""
        data = memoryview("".join(line + "\n" for line in lines).encode())
        while data:
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def create(flor_dir: Path, header: dict) -> Path:
    """Write a journal holding only its header, for a child process to continue."""
    path = journal_dir(flor_dir) / f"{header[RUN_ID]}.jsonl"
    JournalWriter(path, header).close()
    return path


_HEADER_KINDS = frozenset((RUN, END, COMMIT))
# How those lines begin: flor writes KIND first, with or without json.dumps's spaces.
_HEADER_STARTS = tuple(f'{{"{KIND}":{space}"{kind}"'.encode()
                       for kind in _HEADER_KINDS for space in ("", " "))
_BATCH_BYTES = 2 << 20  # ~25,000 records a batch when folding


def _merge_header(header: dict, rec: dict) -> None:
    if rec[KIND] == RUN:
        header.update(rec)
    else:
        header.update({k: v for k, v in rec.items() if k not in (KIND, SEQ)})


def read_header(path: Path) -> dict:
    """The header (with end/commit lines merged in), read from those lines alone: the
    records, which a long run has millions of, are not decoded."""
    with open(path, "rb") as f:
        found = b"".join(line for line in f if line.startswith(_HEADER_STARTS))
    header: dict = {}
    for rec in notes.read_records(found.decode("utf-8", "replace"), f"journal {path.name}",
                                  torn=True):
        _merge_header(header, rec)
    return header


def record_chunks(path: Path) -> Iterator[bytes]:
    """The journal's record lines, a batch at a time, as they were written: each batch is
    only checked (by orjson, in C) and copied, not decoded into Python objects and
    encoded again. Header lines are left out; a torn or damaged line (a killed run's last)
    is left out quietly, and a batch holding one is rendered again line by line."""
    with open(path, "rb") as f:
        while lines := f.readlines(_BATCH_BYTES):
            yield _checked_batch(lines, path.name)


def _checked_batch(lines: list[bytes], name: str) -> bytes:
    import orjson

    data = b"".join(lines)
    try:
        values = orjson.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
        kinds = list(map(_KIND_OF, values)) if len(values) == len(lines) else None
    except (orjson.JSONDecodeError, TypeError, KeyError):
        kinds = None
    if kinds is not None and set(map(type, kinds)) == {str}:
        if _HEADER_KINDS.isdisjoint(kinds):
            return data if data.endswith(b"\n") else data + b"\n"
        return b"".join(line if line.endswith(b"\n") else line + b"\n"
                        for line, kind in zip(lines, kinds) if kind not in _HEADER_KINDS)
    text = data.decode("utf-8", "replace")
    return "".join(json.dumps(rec, separators=(",", ":")) + "\n"
                   for rec in notes.read_records(text, f"journal {name}", torn=True)
                   if rec[KIND] not in _HEADER_KINDS).encode()


_KIND_OF = itemgetter(KIND)


def load_fold(git: Git) -> None:
    """Load what ``fold`` needs (pygit2, ~0.1 s), so that a supervisor can do it while
    its script runs instead of after."""
    git.repo


def fold(git: Git, path: Path, status: dict | None = None,
         summary: dict | None = None) -> str | None:
    """Turn a finished run's journal into a shadow commit and its note; delete the journal.

    Returns the shadow commit, or None when the journal was already folded by another
    process or the run was aborted by bad input (which must leave nothing behind).
    The caller must not hold the journal's lock; this takes it, so two processes can
    race to fold the same orphan and exactly one wins.

    Idempotent: a fold cut short (SIGKILL, a full disk) after the note was written and
    before the journal was removed is finished by the next one, which finds the run in
    the note and only removes the journal. Ctrl-C waits until the fold is done.
    """
    from flor_cli.storage.git import SHADOW_REF

    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    try:
        flock(fd, LOCK_EX)
        if not _same_file(fd, path):
            return None  # folded and removed while we waited for the lock
        with interrupts_deferred():
            header = read_header(path)
            if status:  # kept in the journal, for a fold that finishes this one's work
                os.write(fd, (json.dumps({KIND: END, **status}) + "\n").encode())
                header.update(status)
            if header.get("aborted") or "tree" not in header:
                os.unlink(path)
                return None
            header.setdefault("status", "killed")
            if header.get(LOST) and header["status"] == "ok":
                header["status"] = "incomplete"  # records were lost: never `ok`
            commit = header.get("commit")
            if not commit:
                message = f"flor run {header[RUN_ID]}: {header.get('script', '')}"
                commit = git.append_to_branch(SHADOW_REF, header["tree"], message)
                os.write(fd, (json.dumps({KIND: COMMIT, "commit": commit}) + "\n").encode())
            elif _in_note(git, commit, header[RUN_ID]):
                os.unlink(path)  # an earlier fold wrote the note and stopped there
                return commit
            header.pop("commit", None)
            header.pop("tree", None)
            header.pop("supervisor", None)
            if header.get("big"):
                from flor_cli.storage.bigfiles import hashed

                header["big"] = hashed(git, header["big"])
            if summary is not None:  # for the caller's "recorded run" line
                summary.update(run=header[RUN_ID], records=0)
            git.append_notes({commit: _note_chunks(header, path, summary)},
                             f"flor: record run {header[RUN_ID]}")
            os.unlink(path)
            return commit
    finally:
        os.close(fd)


def _note_chunks(header: dict, path: Path, summary: dict | None = None) -> Iterator[bytes]:
    """A run's note from its journal: the header line, then the records as written
    (counted into ``summary["records"]`` when given: chunks hold whole lines)."""
    yield notes.render(header, ()).encode()
    for chunk in record_chunks(path):
        if summary is not None:
            summary["records"] += chunk.count(b"\n")
        yield chunk


def _in_note(git: Git, commit: str, run: str) -> bool:
    """Whether ``commit``'s note already holds run ``run`` (its fold got that far), from
    the note's header lines alone (the note may be a long run's)."""
    key = git.note_key(commit)
    try:
        header = notes.scan_headers(git.note_chunks(key), f"the note of commit "
                                    f"{commit[:12]}")[0] if key else None
    except notes.NewerFormat:
        return False
    return header is not None and header.get(RUN_ID) == run


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM) until the block is done, then deliver it: a fold is
    short, and stopping it half-way is what makes a record go missing or twice."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    caught: list[tuple[int, object]] = []
    previous = {sig: signal.signal(sig, lambda s, frame: caught.append((s, frame)))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig, frame in caught[:1]:
            handler = previous[sig]
            if callable(handler):
                handler(sig, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


def repository_to_read(start: str | os.PathLike = ".") -> Git:
    """The repository around START, made ready to read: crashed runs' journals folded and
    fetched runs merged (:func:`fold_orphans`). Every read command and ``flor.dataframe``,
    ``flor.query``, ``flor.plot`` and ``flor.replay`` start here, so that what they read
    includes every run on this machine."""
    from flor_cli.storage.git import Git

    git = Git.discover(start)
    fold_orphans(git)
    return git


def fold_orphans(git: Git) -> list[str]:
    """Fold the journals of runs that died without folding their own (crash, SIGKILL).

    The step every read command takes first. It also merges the runs a plain ``git
    fetch`` brought into flor's mirrors (:func:`mirrors.merge_fetched`): both bring
    records that are on this machine into the notes before anything reads them.
    """
    from flor_cli.storage import mirrors

    mirrors.merge_fetched(git)
    folded = []
    directory = journal_dir(git.flor_dir)
    if not directory.is_dir():
        return folded
    for path in sorted(directory.glob("*.jsonl")):
        try:
            commit = fold(git, path) if _is_orphan(path) else None
        except notes.NewerFormat as e:  # a newer flor's run: that flor folds it
            notes.warn(str(e))
            continue
        if commit:
            folded.append(commit)
    return folded


def _is_orphan(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            flock(fd, LOCK_EX | LOCK_NB)
        except BlockingIOError:
            return False  # its run is alive and writing
        flock(fd, LOCK_UN)
        return not alive(read_header(path).get("supervisor"))
    finally:
        os.close(fd)


def alive(pid: int | None) -> bool:
    """Whether the ``flor run`` that will fold this journal with its exit status lives."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def begin(git: Git, script: str, argv: list[str], kwargs: dict[str, str],
          supervisor: int | None = None, name: str | None = None, *,
          tree: str | None = None, cwd: str | None = None, big: list | None = None) -> Path:
    """Start a run: snapshot the code that is about to run and write the journal header.

    The snapshot is only a tree here; it becomes a commit on ``flor.shadow`` when the run
    is folded, so a run aborted by bad input leaves no trace on the branch. A queued job
    (``flor serve``) brings its own ``tree``, with ``script`` and ``cwd`` relative to the
    repository root, and the big files its snapshot left out (``big``).
    """
    import getpass
    import sys
    import time

    from flor_cli.storage import bigfiles

    head = git.head()
    started = time.time()
    big = list(big or [])
    if tree is None:
        big = bigfiles.scan(git)
        try:
            rel_script = str(Path(script).resolve().relative_to(git.root))
        except ValueError:
            rel_script = script
        tree = git.snapshot_tree(e["path"] for e in big)
        cwd = os.path.relpath(os.getcwd(), git.root)
    else:
        rel_script = script
    header = {
        KIND: RUN,
        RUN_ID: new_id(started),
        "tree": tree,
        "script": rel_script,
        "cwd": cwd,
        "argv": argv,
        "kwargs": kwargs,
        "branch": head.branch,
        "head": head.commit,
        "start": started,
        # what platform.python_version() and platform.node() say, without importing
        # platform (10 ms of flor run's start-up)
        "python": sys.version.split()[0],
        "host": os.uname().nodename,
        "user": getpass.getuser(),
        "supervisor": supervisor,
    }
    if big:  # the fold adds their hashes
        header["big"] = big
    if name is not None:  # ``flor run --name``: a tag from the start (notes.lifecycle)
        header["name"] = name
    if (why := notes.problem(header)) is not None:  # its note's reader would skip it,
        from flor_cli.errors import UserError  # and the fold then delete the journal

        raise UserError(f"cannot record this run: {why}")
    return create(git.flor_dir, header)
