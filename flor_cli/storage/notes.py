"""The note format: one run per note, JSON Lines, order carried by sequence numbers.

A note is the whole record of one run, attached to the run's shadow commit::

    {"t":"run","run":"20261124-011530-a3f9c2","v":1,"script":"train.py",...}   header
    {"t":"arg","s":0,"n":"lr","v":0.0005}                                     flor.arg
    {"t":"log","s":7,"n":"loss","v":0.41,"c":{"epoch":0,"step":3}}             flor.log
    {"t":"log","s":9,"n":"w","v":[1,2],"ty":"torch.Tensor","c":{}}            non-JSON value
    {"t":"time","s":8,"k":"nested","c":{"epoch":0},"i":0,"sec":2.01}           timings
    {"t":"ckpt","s":10,"b":0,"c":{"epoch":0},"i":0,"objs":{..},"sec":..}      checkpoint
    {"t":"replay","rp":"<id>","names":[..],"src":{..},...}                     replay header
    {"t":"log","rp":"<id>","s":0,"n":"grad_norm","v":..,"c":{..}}              replayed
    {"t":"tag","n":"best","at":1764423122.51}                                  lifecycle

Every line is self-describing and unique, so a line-wise union of two notes (what
``flor pull`` does, like git's ``cat_sort_uniq``) is a valid note; readers restore order
from ``(rp, s)`` and never depend on line position. A checkpoint, and the timing of an
epoch or a nested loop, is about nested loop ``i`` of epoch context ``c`` in the run's
``flor.checkpointing`` block number ``b`` (from 0; -1 outside any; see :func:`loop_key`).

Replays append; they never rewrite. A second replay of a name into a run adds its own
header and records, and the newest replay of the name is the value: replays are
ordered by their header's ``start`` (seconds since the epoch, taken when the replay of
that run began), ties broken by ``rp``. Replay ids sort by local time only, so readers
order by ``(start, rp)``, never by ``rp`` alone; the older values stay in the note as
history.

Lifecycle records (:data:`LIFECYCLE`: tags, annotations, removal and its undoing, the
collection of a removed run's objects) are appended to a run's note at any time; each
carries the time it was made (``at``), which keeps it unique and orders them
(:func:`lifecycle`). Like every other line they merge by union: a removal made in one
clone survives a pull from a clone that still has the run.

The keys and kinds are named below; every module reads and writes records through these
names, and every reader decodes through :func:`read_records`.

A long note is stored in parts (see ``storage/git.py``, ``PART_BYTES``): the note blob
at ``ab/<38 hex>`` and its continuations ``ab/<38 hex>.1``, ``.2``, ... beside it in the
notes tree, each cut at a line end; the note is their lines in order. Since no reader
depends on line position, which part a line is in never matters, and two clones' notes
merge part by part. :func:`scan_headers` and :func:`record_batches` read such a note a
part and a batch of lines at a time.
"""

from __future__ import annotations

import json
import re
import sys
from itertools import compress
from operator import itemgetter, methodcaller
from typing import Any, Iterable, Iterator

from flor_cli.storage.objects import is_digest

# This module is imported by the runtime (every recording training process, and its
# journal writer process, which must be ready within milliseconds) for the names below,
# so it imports nothing heavy at the top: no dataclasses, and orjson (which imports
# dataclasses, uuid, datetime: 15 ms) only where notes are decoded.

FORMAT_VERSION = 1  # the header's VERSION; a reader refuses a note newer than this

# -- keys --------------------------------------------------------------------------------
KIND = "t"  # every record: which kind of record it is (the kinds below)
SEQ = "s"  # order within the run (or within its replay)
NAME = "n"  # arg, log: the name given to flor.arg / flor.log
VALUE = "v"  # arg, log: the value (JSON, or the readable form of VALUE_TYPE)
VERSION = "v"  # run header: FORMAT_VERSION of the note
VALUE_TYPE = "ty"  # log: the Python type of a value that is not plain JSON
CTX = "c"  # log, time, ckpt: the loop context, {"epoch": 3, "step": 7}
REPLAY_ID = "rp"  # replay header and replayed records: which replay wrote them
TIMING = "k"  # time: which part of the run was timed (the timing kinds below)
BLOCK = "b"  # time, ckpt: the flor.checkpointing block, from 0 (-1 outside any)
ORDINAL = "i"  # time, ckpt: the nested loop's ordinal in its epoch
SECONDS = "sec"  # time, ckpt: how long it took
OBJECTS = "objs"  # ckpt: object name -> digest in the object store
BYTES = "bytes"  # ckpt: size written
SHA = "sha"  # ckpt: in each of OBJECTS, the object's digest
SERIALIZER = "kind"  # ckpt: in each of OBJECTS, how it was serialized (the values below)
CAPTURED = "fx"  # ckpt: names whose values the nested loop left in its frame, captured
NOT_CAPTURED = "nc"  # ckpt: names it changed that could not be captured ("*": not known)
RUN_ID = "run"  # run header: the run's id
LOST = "lost"  # end (journal), run header: records that could not be written
RUN_NAME = "name"  # run header: ``flor run --name`` (a tag from the start)
AT = "at"  # lifecycle: when the change was made (Unix time)
MESSAGE = "m"  # lifecycle, note: the annotation

# -- record kinds (values of KIND) ------------------------------------------------------
RUN = "run"  # the run header (first line)
ARG = "arg"
LOG = "log"
TIME = "time"
CKPT = "ckpt"
REPLAY = "replay"  # a replay's header
END = "end"  # journal only: the run ended (merged into the header on fold)
COMMIT = "commit"  # journal only: the shadow commit a fold made (merged into the header)
MISSING = "missing"  # replay journal only: a checkpoint object (SHA) in no store; its
#                      nested loop (CTX, ORDINAL) was re-executed instead of restored
# lifecycle (appended at any time): tag/untag (NAME: the tag), note (MESSAGE), rm and
# restore (removal and its undoing), purge (a removed run's objects collected: final)
TAG, UNTAG, ANNOTATE, REMOVE, RESTORE, PURGE = "tag", "untag", "note", "rm", "restore", "purge"
LIFECYCLE = frozenset((TAG, UNTAG, ANNOTATE, REMOVE, RESTORE, PURGE))

# -- serializers (values of SERIALIZER in a checkpoint's OBJECTS) ----------------------
STATE_DICT = "state_dict"  # torch.save of obj.state_dict()
MODULE = "module"  # torch.save of a module's state, grads and training flags
PICKLE = "pickle"  # cloudpickle of the object
RNG = "rng"  # pickle of the random generators' states
FRAME = "frame"  # pickle of what a nested loop left in its frame
SERIALIZERS = frozenset((STATE_DICT, MODULE, PICKLE, RNG, FRAME))

# -- timing kinds (values of TIMING) ----------------------------------------------------
PREFIX = "prefix"  # from the start of the script to the main loop
OUTER = "outer"  # one epoch of the main loop
NESTED = "nested"  # one nested loop
SUFFIX = "suffix"  # from the end of the main loop to the end of the script
CKPT_LOAD = "ckpt_load"  # replay: restoring a checkpoint instead of running a nested loop
STARTUP = "startup"  # replay worker: from its process's start (or fork) to its first flor call


class NewerFormat(ValueError):
    """A note written by a newer flor, in a format this one cannot read correctly."""


class RunNote:
    """One run's note, decoded: header, records in ``(rp, s)`` order, replay headers,
    lifecycle records (oldest first)."""

    __slots__ = ("commit", "header", "records", "replays", "events")

    def __init__(self, commit: str, header: dict, records: list[dict] | None = None,
                 replays: list[dict] | None = None, events: list[dict] | None = None):
        self.commit, self.header = commit, header
        self.records = records if records is not None else []
        self.replays = replays if replays is not None else []
        self.events = events if events is not None else []

    @property
    def run(self) -> str:
        return self.header.get(RUN_ID, self.commit[:12])


class Lifecycle:
    """Where a run stands after its lifecycle records, applied oldest first."""

    __slots__ = ("tags", "annotation", "removed", "purged")

    def __init__(self) -> None:
        self.tags: list[str] = []
        self.annotation: str | None = None
        self.removed: float | None = None  # when, if removed now
        self.purged = False  # removed and its objects collected: no longer restorable


def lifecycle(note: RunNote) -> Lifecycle:
    """The run's tags (``flor run --name`` first), annotation and removal state."""
    state = Lifecycle()
    name = note.header.get(RUN_NAME)
    tags: dict[str, None] = {name: None} if name else {}  # a name: see problem()
    for event in note.events:
        kind = event[KIND]
        if kind == TAG:
            tags[event[NAME]] = None
        elif kind == UNTAG:
            tags.pop(event[NAME], None)
        elif kind == ANNOTATE:
            state.annotation = event.get(MESSAGE)
        elif kind == REMOVE:
            state.removed = event[AT]
        elif kind == RESTORE and not state.purged:
            state.removed = None
        elif kind == PURGE and state.removed is not None:
            state.purged = True
    state.tags = list(tags)
    return state


def event(kind: str, **fields) -> str:
    """One lifecycle record as a note line, stamped with the time it is made."""
    import time

    return json.dumps({KIND: kind, AT: time.time(), **fields}, separators=(",", ":"))


def render(header: dict, records: Iterable[dict]) -> str:
    lines = [json.dumps({KIND: RUN, VERSION: FORMAT_VERSION, **header}, separators=(",", ":"))]
    lines += [json.dumps(r, separators=(",", ":")) for r in records]
    return "\n".join(lines) + "\n"


def parse(commit: str, text: str) -> RunNote | None:
    """The run in a note, or None for a note that is not a flor run (or too new to read)."""
    try:  # read_records, keeping the kinds it found
        decoded, kinds = _checked(_decode_lines(text), f"the note of commit {commit[:12]}",
                                  False)
    except NewerFormat as e:
        warn(str(e))
        return None
    header, records, replays, events = _split(decoded, kinds)
    if header is None:
        return None
    records = _in_order(records, replayed=_REPLAY_KEY_TEXT in text)
    return RunNote(commit, header, records, replays, events)


def _split(decoded: list[dict], kinds: list[str]
           ) -> tuple[dict | None, list[dict], list[dict], list[dict]]:
    """A note's checked records (and their kinds) by role: the run header (all its lines
    merged), the records, the replay headers (by start) and the lifecycle records (by
    time). How :func:`parse` and :func:`scan_headers` read a note, so they agree."""
    if kinds.count(RUN) == 1 and REPLAY not in kinds and LIFECYCLE.isdisjoint(kinds):
        at = kinds.index(RUN)  # the common case, split in C
        return decoded[at], decoded[:at] + decoded[at + 1:], [], []
    header: dict | None = None
    records: list[dict] = []
    replays: list[dict] = []
    events: list[dict] = []
    for rec, kind in zip(decoded, kinds):
        if kind == RUN:
            header = rec if header is None else {**header, **rec}
        elif kind == REPLAY:
            replays.append(rec)
        elif kind in LIFECYCLE:
            events.append(rec)
        else:
            records.append(rec)
    replays.sort(key=lambda r: r.get("start", 0))
    events.sort(key=lambda r: (r[AT], r[KIND], r.get(NAME) or ""))
    return header, records, replays, events


_REPLAY_KEY_TEXT = json.dumps(REPLAY_ID)


def read_records(text: str, source: str, torn: bool = False) -> list[dict]:
    """The records of a note or a journal, decoded, in line order: the one reader of the
    format. ``source`` names the note or journal in warnings.

    A line that is not a record is skipped with a warning naming the source and line
    (see :func:`_checked`); ``torn=True`` (a journal) skips undecodable lines quietly,
    since a killed run may leave one half-written. A run header newer than
    :data:`FORMAT_VERSION` raises :class:`NewerFormat`: a format this flor does not know
    would otherwise be misread without a word.
    """
    return _checked(_decode_lines(text), source, torn)[0]


def warn(message: str) -> None:
    """One line on stderr: something was skipped, and flor went on."""
    print(f"flor: warning: {message}", file=sys.stderr)


def _in_order(records: list[dict], replayed: bool) -> list[dict]:
    """Records by ``(rp, s)``: the recorded run first, then each replay.

    A note without replays (no ``"rp"`` anywhere in its text) sorts on ``s`` alone with a
    C key function, a third of the cost of the general key on a million records.
    """
    if not replayed:
        try:
            return sorted(records, key=_SEQ)
        except (KeyError, TypeError):  # a record without a number in "s": the general key
            pass
    return sorted(records, key=lambda r: (r.get(REPLAY_ID) or "", r.get(SEQ, -1)))


_SEQ = itemgetter(SEQ)


def loop_key(block: int, ctx: dict, ordinal: int) -> tuple[int, str, int]:
    """Which nested loop a record is about: the ``flor.checkpointing`` block (a script may
    enter one block per value of a plain ``for`` loop, with the same loop contexts in
    each), the epoch's loop context, and the nested loop's ordinal in that epoch."""
    return block, json.dumps(ctx, sort_keys=True), ordinal


def loop_key_of(record: dict) -> tuple[int, str, int]:
    """:func:`loop_key` of a checkpoint or timing record; one written before blocks were
    numbered is taken to be from the first block."""
    return loop_key(record.get(BLOCK, 0), record.get(CTX) or {}, record.get(ORDINAL, 0))


def main_timings(records: list[dict]) -> list[dict]:
    """The recorded run's timing records from its main loop's ``prefix`` on.

    A loop before a script's first ``flor.checkpointing`` block is taken for the main
    loop until the block starts; the block's own loop then records a new ``prefix`` (see
    :mod:`flor_cli.runtime.session`), and what the earlier loop recorded is not timings
    of the main loop.
    """
    times = [r for r in records if r[KIND] == TIME and not r.get(REPLAY_ID)]
    starts = [i for i, r in enumerate(times) if r.get(TIMING) == PREFIX]
    return times[starts[-1]:] if starts else times


class _Undecodable:
    """Stands for a line that is not JSON, so that list positions stay line numbers."""

    def __init__(self, line: str):
        self.line = line


def _checked(values: list, source: str, torn: bool) -> tuple[list[dict], list[str]]:
    """The records among the decoded lines, and their kinds: THE place where a decoded
    line is checked.

    A record is a JSON object whose KIND is a string and whose fields pass
    :func:`problem`; any other line is skipped with a warning naming the source and the
    line. A run header must be of a version this flor reads. The common case (every line a record) is checked in C (``map`` of an
    itemgetter over the list, a set of the few kinds): a Python loop over a million
    records would slow the cache rebuild by a tenth.
    """
    try:  # JSON values other than objects raise TypeError; an object without KIND, KeyError
        kinds = list(map(_KIND_OF, values))
    except (KeyError, TypeError):
        kinds = None
    if kinds is None or not set(map(type, kinds)) <= _STR or not _all_valid(values, kinds):
        kept = []
        for number, v in enumerate(values, 1):
            if type(v) is dict and type(v.get(KIND)) is str:
                why = problem(v)
                if why is None:
                    kept.append(v)
                else:
                    warn(f"{source}, line {number}: {why}, skipped")
            elif not isinstance(v, _Undecodable):
                warn(f"{source}, line {number}: not a flor record, skipped")
            elif not torn:
                warn(f"{source}, line {number}: not JSON, skipped")
        values, kinds = kept, [v[KIND] for v in kept]
    at = -1
    for _ in range(kinds.count(RUN)):
        at = kinds.index(RUN, at + 1)
        version = values[at].get(VERSION, FORMAT_VERSION)
        if version != FORMAT_VERSION and (type(version) is not int or version > FORMAT_VERSION):
            raise NewerFormat(f"{source} has format version {version!r}; this flor reads "
                              f"version {FORMAT_VERSION}: skipped (a newer flor reads it)")
    return values, kinds


_STR = frozenset((str,))
_KIND_OF = itemgetter(KIND)


# -- what a line may hold (validated where it is decoded: notes come from other clones) --

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_id(text: object) -> bool:
    """Whether ``text`` can be a run or replay id: it names files and worktrees, so one
    path component, never ``..``, at most 100 characters."""
    return type(text) is str and _ID.fullmatch(text) is not None


def inside(path: object) -> bool:
    """Whether ``path`` is relative and stays inside the directory it is joined to: THE
    path rule for what a note names in a checkout (a run's working directory, its big
    files, before replay runs or links there; its script, before replay runs it)."""
    return (type(path) is str and "\0" not in path and not path.startswith(("/", "\\"))
            and ".." not in path.replace("\\", "/").split("/"))


def _is_big(big: object) -> bool:
    """A header's big files (``storage/bigfiles.py``): each a non-empty path inside."""
    return type(big) is list and all(
        type(e) is dict and e.get("path") and inside(e["path"]) for e in big)


def _is_name(name: object) -> bool:
    return type(name) is str and name != "" and "\0" not in name


def _is_ctx(ctx: object) -> bool:
    return ctx is None or type(ctx) is dict


def _is_flat_ctx(ctx: object) -> bool:
    """A checkpoint's or timing's context: loop name -> iteration, which replay plans
    with as numbers (sets of epochs), so no list or object among its values."""
    return _is_ctx(ctx) and all(type(v) not in (list, dict) for v in (ctx or {}).values())


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def problem(rec: dict) -> str | None:
    """Why a record (a JSON object with a string kind) cannot be used, or None.

    Checks what a field becomes: run and replay ids become file and worktree names,
    script and cwd paths inside a checkout, digests paths in the object store, names
    SQL identifiers; and the shape every reader relies on (a name, a context dict).
    """
    kind = rec[KIND]
    if SEQ in rec and not _is_int(rec[SEQ]):
        return "its sequence number is not an integer"
    if REPLAY_ID in rec and not is_id(rec[REPLAY_ID]):  # every record sorts on it
        return "not a replay id"
    if kind == LOG or kind == ARG:
        if not _is_name(rec.get(NAME)):
            return "no name"
        if not _is_ctx(rec.get(CTX)):
            return "its loop context is not an object"
    elif kind == RUN:
        if RUN_ID in rec and not is_id(rec[RUN_ID]):
            return f"{str(rec[RUN_ID])[:60]!r} is not a run id"
        argv = rec.get("argv", [])
        if type(argv) is not list or not all(type(a) is str and "\0" not in a for a in argv):
            return "its argv is not a list of strings"
        if type(rec.get("kwargs", {})) is not dict:
            return "its kwargs are not an object"
        # a script outside the repository (``flor run /tmp/x.py``) is recorded as given:
        # listed, and not replayed (``services/replay/plan.py``)
        if "script" in rec and not (type(rec["script"]) is str and "\0" not in rec["script"]):
            return "its script is not a path"
        if "cwd" in rec and not inside(rec["cwd"]):
            return "its working directory is not a relative path inside the repository"
        if "big" in rec and not _is_big(rec["big"]):
            return "its big files are not relative paths inside the repository"
        if RUN_NAME in rec and not _is_name(rec[RUN_NAME]):
            return "its name is not a name"
    elif kind == REPLAY:
        if not is_id(rec.get(REPLAY_ID)):
            return "not a replay id"
        names = rec.get("names", [])
        if type(names) is not list or not all(map(_is_name, names)):
            return "its names are not a list of names"
        if not _is_number(rec.get("start", 0)):
            return "its start is not a number"
    elif kind in LIFECYCLE:  # who tagged, noted or removed what, and when
        if not _is_number(rec.get(AT)):
            return "its time is not a number"
        if (kind in (TAG, UNTAG) or NAME in rec) and not _is_name(rec.get(NAME)):
            return "its tag is not a name"  # events sort on it
        if kind == ANNOTATE and type(rec.get(MESSAGE)) is not str:
            return "its annotation is not text"
    elif kind in (CKPT, TIME) and not (
            _is_flat_ctx(rec.get(CTX)) and _is_int(rec.get(BLOCK, 0))
            and _is_int(rec.get(ORDINAL, 0)) and _is_number(rec.get(SECONDS, 0))):
        return "a loop context, block, ordinal or duration of the wrong type"
    if kind == CKPT:
        if not all(type(rec.get(key, [])) is list and all(map(_is_name, rec.get(key, [])))
                   for key in (CAPTURED, NOT_CAPTURED)):
            return "its captured or not captured names are not a list of names"
        objs = rec.get(OBJECTS)
        if type(objs) is not dict or not all(
                type(o) is dict and is_digest(o.get(SHA)) and o.get(SERIALIZER) in SERIALIZERS
                for o in objs.values()):
            return "a checkpoint object that is not a digest"
    return None


def _all_valid(values: list, kinds: list[str]) -> bool:
    """Whether every record passes :func:`problem`, in C for the many log records: the
    few distinct names and the types of contexts and sequence numbers, as sets."""
    logs = list(compress(values, map(LOG.__eq__, kinds)))
    if len(logs) < len(values) and any(map(problem, compress(values, map(LOG.__ne__, kinds)))):
        return False
    if not logs:
        return True
    try:
        names = set(map(_NAME_OF, logs))
    except KeyError:
        return False
    return (all(map(_is_name, names))
            and set(map(type, map(_CTX_OF, logs))) <= _CTX_TYPES
            and set(map(type, map(_SEQ_OF, logs))) <= _SEQ_TYPES
            and all(map(is_id, set(filter(None, map(_REPLAY_OF, logs))))))


_NAME_OF = itemgetter(NAME)
_CTX_OF, _REPLAY_OF = (methodcaller("get", key) for key in (CTX, REPLAY_ID))
_SEQ_OF = methodcaller("get", SEQ, 0)  # a missing number is fine; ``null`` is not one
_CTX_TYPES = frozenset((dict, type(None)))
_SEQ_TYPES = frozenset((int,))


# -- long notes, a batch of lines at a time ---------------------------------------------

BATCH_LINES = 50_000  # ~4 MB of text; ~50 MB decoded
STREAM_BYTES = 8 << 20  # ~100,000 records: a longer note is read a batch at a time


def scan_headers(parts: Iterable[bytes], source: str
                 ) -> tuple[dict | None, list[dict], list[dict]]:
    """The run header (all its lines merged), the replay headers and the lifecycle
    records (as :func:`parse` orders them) of a note given as its parts, found by
    searching the bytes for their lines, which flor writes compact (``{"t":"run",...``)
    wherever a merge sorted them: the records are not decoded.
    Raises :class:`NewerFormat` as :func:`read_records` does."""
    found = [line for data in parts for marker in _HEADER_MARKERS
             for line in _lines_starting(data, marker)]
    text = b"\n".join(found).decode("utf-8", "surrogateescape")
    header, _, replays, events = _split(*_checked(_decode_lines(text), source, False))
    return header, replays, events


# How the lines scan_headers looks for begin: KIND first, as render and event write them.
_HEADER_MARKERS = tuple(f'{{"{KIND}":"{kind}"'.encode()
                        for kind in (RUN, REPLAY, *sorted(LIFECYCLE)))


def _lines_starting(data: bytes, marker: bytes) -> Iterator[bytes]:
    """The lines of ``data`` that start with ``marker``, found by ``bytes.find``."""
    at = 0 if data.startswith(marker) else data.find(b"\n" + marker) + 1
    while at > 0 or (at == 0 and data.startswith(marker)):
        end = data.find(b"\n", at)
        yield data[at:] if end < 0 else data[at:end]
        if end < 0:
            return
        at = data.find(b"\n" + marker, end) + 1
        if at == 0:
            return


def record_batches(parts: Iterable[bytes], source: str) -> Iterator[list[dict]]:
    """The records of a note given as its parts, :data:`BATCH_LINES` at a time, in line
    order (headers included: a reader takes the kinds it wants). Memory: one part and one
    batch of decoded records."""
    for data in parts:  # cut at line ends every ~BATCH_LINES lines' worth of bytes: a
        size = len(data)  # list of a 32 MiB part's lines would take 50 MB more
        step = max(1, size * BATCH_LINES // (data.count(b"\n") + 1))
        at = 0
        while at < size:
            end = data.find(b"\n", min(at + step, size))
            end = size if end < 0 else end + 1
            batch = read_records(data[at:end].decode("utf-8", "surrogateescape"), source)
            at = end
            if batch:
                yield batch


class OrderedRecords:
    """The records of a long note in :func:`parse`'s order (``(rp, s)``), a batch at a
    time: the note decoded a batch of lines at a time (:func:`record_batches`) into a
    temporary SQLite file, then read back in that order, a batch at a time. Memory: one
    part, one batch, and SQLite's page cache, whatever the number of records.

    Read back in line order when the lines were in order already (a note as its run's
    fold wrote it), else sorted by SQLite, which sorts on disk (a note merged by
    ``flor pull``). Header, replay and lifecycle lines are not records: see
    :func:`scan_headers`. The records of the kinds in ``keep`` are also kept in
    :attr:`kept`, in order: the few that a reader needs before the others (a run's args).
    With ``spill=False`` only :attr:`kept` is read (no file is written). Use as a context
    manager: the file is removed on exit.
    """

    def __init__(self, parts: Iterable[bytes], source: str, keep: Iterable[str] = (),
                 spill: bool = True):
        import marshal
        import sqlite3
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="flor-records-")
        self._db = sqlite3.connect(f"{self._dir.name}/records.db", isolation_level=None)
        self.kept: list[dict] = []
        try:
            self._ordered = self._fill(parts, source, frozenset(keep),
                                       marshal.dumps if spill else None)
        except BaseException:
            self.close()
            raise

    def _fill(self, parts: Iterable[bytes], source: str, keep: frozenset, dumps) -> bool:
        """Every record into the file (none when ``dumps`` is None); whether they came in
        order."""
        db = self._db
        db.execute("PRAGMA journal_mode=OFF")  # a scratch file: no journal, no fsync
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE r(rp TEXT, s INTEGER, rec BLOB)")
        db.execute("BEGIN")
        skipped = LIFECYCLE | {RUN, REPLAY}
        ordered, last = True, ("", -1 << 63)
        for batch in record_batches(parts, source):
            rows = []
            for rec in batch:
                kind = rec[KIND]
                if kind in skipped:
                    continue
                if kind in keep:
                    self.kept.append(rec)
                if dumps is None:
                    continue
                key = (rec.get(REPLAY_ID) or "", rec.get(SEQ, -1))
                if ordered and key < last:
                    ordered = False
                last = key
                rows.append((*key, dumps(rec)))
            db.executemany("INSERT INTO r VALUES (?,?,?)", rows)
        db.execute("COMMIT")
        self.kept.sort(key=lambda r: (r.get(REPLAY_ID) or "", r.get(SEQ, -1)))
        return ordered

    def batches(self) -> Iterator[list[dict]]:
        """The records in order, :data:`BATCH_LINES` at a time."""
        import marshal  # JSON values only: never pickle, even of what a note held

        loads = marshal.loads
        cursor = self._db.execute("SELECT rec FROM r ORDER BY " +
                                  ("rowid" if self._ordered else "rp, s, rowid"))
        while rows := cursor.fetchmany(BATCH_LINES):
            yield [loads(rec) for (rec,) in rows]

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> "OrderedRecords":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode_lines(text: str) -> list:
    """Every line, decoded: a JSON value, or :class:`_Undecodable` for a line that is not
    JSON; blank lines are dropped (so positions are line numbers in a note without any).

    A note of a long run has a million lines. They are decoded as one JSON array by
    orjson (a compiled parser, 4-5x faster than ``json`` here on the cold rebuild of the
    cache), which gives the same records for a note made of whole JSON lines (what flor
    and ``cat_sort_uniq`` write). When that fails or does not yield one value per line
    (a damaged line, or what orjson refuses and ``json`` takes: NaN), each line is
    decoded on its own, by orjson and else by ``json``. Three rarities are found by a
    scan of the text first:

    * an integer of 19 digits or more, which orjson would read as a float: its lines are
      decoded by ``json``, which keeps it exact;
    * invalid UTF-8 (the blob was decoded with ``surrogateescape``): its lines are not
      JSON;
    * a lone surrogate written as an escape (``"\\udc80"``): decoded, it is spelled
      out (:func:`readable`), so that every reader can encode, index and show it.
    """
    import orjson

    body = text.strip()
    if not body:
        return []
    long_ints = _has_long_digits(body)
    raw = not body.isascii() and _RAW_SURROGATE.search(body) is not None
    values = None
    if not (long_ints or raw) and "\n\n" not in body and "\r" not in body:
        try:
            values = orjson.loads(f"[{body.replace(chr(10), ',')}]")
            if len(values) != body.count("\n") + 1:
                values = None
        except orjson.JSONDecodeError:
            values = None
    if values is None:
        values = [_decode_line(line, long_ints, raw) for line in text.splitlines()
                  if line.strip()]
    if _ESCAPED_SURROGATE.search(body):
        values = [readable(v) for v in values]
    return values


def _decode_line(line: str, long_ints: bool, raw: bool) -> Any:
    import orjson

    if raw and _RAW_SURROGATE.search(line):
        return _Undecodable(line)
    if not (long_ints and _has_long_digits(line)):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return _Undecodable(line)


def _has_long_digits(text: str) -> bool:
    """Whether ``text`` has a run of 19 digits or more. In C, by bytes.translate: the
    regular expression ``\\d{19}`` took 0.3 us a byte on notes full of 17-digit floats,
    which was a third of a cold cache rebuild."""
    return text.encode("utf-8", "surrogatepass").translate(_DIGITS_TO_ZERO).find(
        _NINETEEN_ZEROS) >= 0


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def readable(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) spelled out as the
    six characters of its escape: text SQLite, UTF-8 and terminals take as it is."""
    if type(value) is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8") \
            if _RAW_SURROGATE.search(value) else value
    if type(value) is list:
        return [readable(v) for v in value]
    if type(value) is dict:
        return {readable(k): readable(v) for k, v in value.items()}
    return value
