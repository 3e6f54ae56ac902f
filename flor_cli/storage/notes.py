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

Every line is self-describing and unique, so a line-wise union of two notes (what
``flor pull`` does, like git's ``cat_sort_uniq``) is a valid note; readers restore order
from ``(rp, s)`` and never depend on line position. A checkpoint, and the timing of an
epoch or a nested loop, is about nested loop ``i`` of epoch context ``c`` in the run's
``flor.checkpointing`` block number ``b`` (from 0; -1 outside any; see :func:`loop_key`).

The keys and kinds are named below; every module reads and writes records through these
names, and every reader decodes through :func:`read_records`.
"""

from __future__ import annotations

import json
import sys
from operator import itemgetter
from typing import Iterable

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
SERIALIZER = "kind"  # ckpt: in each of OBJECTS, how it was serialized
RUN_ID = "run"  # run header: the run's id
LOST = "lost"  # end (journal), run header: records that could not be written

# -- record kinds (values of KIND) ------------------------------------------------------
RUN = "run"  # the run header (first line)
ARG = "arg"
LOG = "log"
TIME = "time"
CKPT = "ckpt"
REPLAY = "replay"  # a replay's header
END = "end"  # journal only: the run ended (merged into the header on fold)
COMMIT = "commit"  # journal only: the shadow commit a fold made (merged into the header)

# -- timing kinds (values of TIMING) ----------------------------------------------------
PREFIX = "prefix"  # from the start of the script to the main loop
OUTER = "outer"  # one epoch of the main loop
NESTED = "nested"  # one nested loop
SUFFIX = "suffix"  # from the end of the main loop to the end of the script
CKPT_LOAD = "ckpt_load"  # replay: restoring a checkpoint instead of running a nested loop


class NewerFormat(ValueError):
    """A note written by a newer flor, in a format this one cannot read correctly."""


class RunNote:
    """One run's note, decoded: header, records in ``(rp, s)`` order, replay headers."""

    __slots__ = ("commit", "header", "records", "replays")

    def __init__(self, commit: str, header: dict, records: list[dict] | None = None,
                 replays: list[dict] | None = None):
        self.commit, self.header = commit, header
        self.records = records if records is not None else []
        self.replays = replays if replays is not None else []

    @property
    def run(self) -> str:
        return self.header.get(RUN_ID, self.commit[:12])


def render(header: dict, records: Iterable[dict]) -> str:
    lines = [json.dumps({KIND: RUN, VERSION: FORMAT_VERSION, **header}, separators=(",", ":"))]
    lines += [json.dumps(r, separators=(",", ":")) for r in records]
    return "\n".join(lines) + "\n"


def parse(commit: str, text: str) -> RunNote | None:
    """The run in a note, or None for a note that is not a flor run (or too new to read)."""
    header: dict | None = None
    records: list[dict] = []
    replays: list[dict] = []
    try:  # read_records, keeping the kinds it found
        decoded, kinds = _checked(_decode_lines(text), f"the note of commit {commit[:12]}",
                                  False)
    except NewerFormat as e:
        warn(str(e))
        return None
    if kinds.count(RUN) == 1 and REPLAY not in kinds:  # the common case, split in C
        at = kinds.index(RUN)
        header, records = decoded[at], decoded[:at] + decoded[at + 1:]
    else:
        for rec, kind in zip(decoded, kinds):
            if kind == RUN:
                header = rec if header is None else {**header, **rec}
            elif kind == REPLAY:
                replays.append(rec)
            else:
                records.append(rec)
    if header is None:
        return None
    records = _in_order(records, replayed=_REPLAY_KEY_TEXT in text)
    replays.sort(key=lambda r: r.get("start", 0))
    return RunNote(commit, header, records, replays)


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

    A record is a JSON object whose KIND is a string; any other line is skipped with a
    warning naming the source and the line. A run header must be of a version this flor
    reads. The common case (every line a record) is checked in C (``map`` of an
    itemgetter over the list, a set of the few kinds): a Python loop over a million
    records would slow the cache rebuild by a tenth.
    """
    try:  # JSON values other than objects raise TypeError; an object without KIND, KeyError
        kinds = list(map(_KIND_OF, values))
    except (KeyError, TypeError):
        kinds = None
    if kinds is None or not set(map(type, set(kinds))) <= _STR:
        kept = []
        for number, v in enumerate(values, 1):
            if type(v) is dict and type(v.get(KIND)) is str:
                kept.append(v)
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


def _decode_lines(text: str) -> list:
    """Every line, decoded: a JSON value, or :class:`_Undecodable` for a line that is not
    JSON; blank lines are dropped (so positions are line numbers in a note without any).

    A note of a long run has a million lines. They are decoded as one JSON array by
    orjson (a compiled parser, 4-5x faster than ``json`` here on the cold rebuild of the
    cache), which gives the same records for a note made of whole JSON lines (what flor
    and ``cat_sort_uniq`` write). When that fails or does not yield one value per line
    (a damaged line, or what orjson refuses and ``json`` takes: NaN, huge integers), each
    line is decoded on its own, by orjson and else by ``json``.
    """
    import orjson

    body = text.strip()
    if not body:
        return []
    if "\n\n" not in body and "\r" not in body:
        try:
            values = orjson.loads(f"[{body.replace(chr(10), ',')}]")
            if len(values) == body.count("\n") + 1:
                return values
        except orjson.JSONDecodeError:
            pass
    values = []
    for line in text.splitlines():
        if line.strip():
            try:
                values.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                try:
                    values.append(json.loads(line))
                except ValueError:
                    values.append(_Undecodable(line))
    return values
