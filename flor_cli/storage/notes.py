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

Every line is self-describing and unique, so ``git notes merge -s cat_sort_uniq`` (which
concatenates, sorts and de-duplicates lines) yields a valid note; readers restore order
from ``(rp, s)`` and never depend on line position. A checkpoint, and the timing of an
epoch or a nested loop, is about nested loop ``i`` of epoch context ``c`` in the run's
``flor.checkpointing`` block number ``b`` (from 0; -1 outside any; see :func:`loop_key`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Iterable

import orjson

FORMAT_VERSION = 1


@dataclass
class RunNote:
    commit: str
    header: dict
    records: list[dict] = field(default_factory=list)
    replays: list[dict] = field(default_factory=list)

    @property
    def run(self) -> str:
        return self.header.get("run", self.commit[:12])


def render(header: dict, records: Iterable[dict]) -> str:
    lines = [json.dumps({"t": "run", "v": FORMAT_VERSION, **header}, separators=(",", ":"))]
    lines += [json.dumps(r, separators=(",", ":")) for r in records]
    return "\n".join(lines) + "\n"


def parse(commit: str, text: str) -> RunNote | None:
    """The run in a note, or None for a note that is not a flor run."""
    header: dict | None = None
    records: list[dict] = []
    replays: list[dict] = []
    for rec in _decode_lines(text):
        kind = rec.get("t") if isinstance(rec, dict) else None
        if kind == "run":
            header = rec if header is None else {**header, **rec}
        elif kind == "replay":
            replays.append(rec)
        elif kind is not None:
            records.append(rec)
    if header is None:
        return None
    records = _in_order(records, replayed='"rp"' in text)
    replays.sort(key=lambda r: r.get("start", 0))
    return RunNote(commit, header, records, replays)


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
    return sorted(records, key=lambda r: (r.get("rp") or "", r.get("s", -1)))


_SEQ = itemgetter("s")


def loop_key(block: int, ctx: dict, ordinal: int) -> tuple[int, str, int]:
    """Which nested loop a record is about: the ``flor.checkpointing`` block (a script may
    enter one block per value of a plain ``for`` loop, with the same loop contexts in
    each), the epoch's loop context, and the nested loop's ordinal in that epoch."""
    return block, json.dumps(ctx, sort_keys=True), ordinal


def loop_key_of(record: dict) -> tuple[int, str, int]:
    """:func:`loop_key` of a checkpoint or timing record; one written before blocks were
    numbered is taken to be from the first block."""
    return loop_key(record.get("b", 0), record.get("c") or {}, record.get("i", 0))


def main_timings(records: list[dict]) -> list[dict]:
    """The recorded run's timing records from its main loop's ``prefix`` on.

    A loop before a script's first ``flor.checkpointing`` block is taken for the main
    loop until the block starts; the block's own loop then records a new ``prefix`` (see
    :mod:`flor_cli.runtime.session`), and what the earlier loop recorded is not timings
    of the main loop.
    """
    times = [r for r in records if r.get("t") == "time" and not r.get("rp")]
    starts = [i for i, r in enumerate(times) if r.get("k") == "prefix"]
    return times[starts[-1]:] if starts else times


def _decode_lines(text: str) -> list:
    """Every line that is JSON, decoded; a line that is not is skipped.

    A note of a long run has a million lines. They are decoded as one JSON array by
    orjson (a compiled parser, 4-5x faster than ``json`` here on the cold rebuild of the
    cache), which gives the same records for a note made of whole JSON lines (what flor
    and ``cat_sort_uniq`` write). When that fails or does not yield one value per line
    (a damaged line, or what orjson refuses and ``json`` takes: NaN, huge integers), each
    line is decoded on its own, by orjson and else by ``json``.
    """
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
                    continue
    return values
