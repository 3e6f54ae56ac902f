"""Turning queued records into journal lines, off the training process.

Formatting a JSON line costs several microseconds of interpreter time per record; done
on a thread of the training process it holds the GIL that training needs. So a session
hands its queued records, marshalled in batches, through a pipe to a small writer
process (``python -m flor_cli.runtime.writer JOURNAL``) that formats and appends them,
on the machine's other core.

The writer holds the journal's ``flock`` while it lives, so a journal is never folded
while records are still on their way into it: when training dies (even by SIGKILL) the
writer reads the pipe to its end, writes what it got, and only then lets go of the lock.

Frames on the pipe: an 8-byte little-endian length, then a ``marshal``-ed slice of the
session's stream (only str, numbers, None, tuples, lists and dicts; marshal writes them five
times faster than pickle, which matters because it runs on the training process); a zero
length ends the journal. If no writer can be started, or it dies, the session falls
back to :class:`InProcessWriter`, the same formatting on a thread.
"""

from __future__ import annotations

import json
import math
import os
import marshal
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, Iterable

from flor_cli.runtime.protocol import without_protocol
from flor_cli.storage.journal import JournalWriter
from flor_cli.storage.notes import CTX, KIND, LOG, NAME, SEQ, VALUE, VALUE_TYPE

_FRAME = struct.Struct("<Q")
# A plain log line, as json.dumps writes {KIND: LOG, SEQ: .., NAME: .., VALUE: .., CTX: ..}
_LOG_SEQ = f"{{{_quote(KIND)}:{_quote(LOG)},{_quote(SEQ)}:"
_LOG_NAME, _LOG_VALUE, _LOG_CTX = (f",{_quote(key)}:" for key in (NAME, VALUE, CTX))


class LineFormatter:
    """Journal lines from a session's stream (see :mod:`session`), numbered in order.

    Lines read as ``json.dumps`` would write them. The stream's loop contexts are state:
    each record gets the one in force where it was put.
    """

    def __init__(self, seq: int = 0, ctx: tuple = ()) -> None:
        self.seq = seq
        self._prefixes: dict[tuple, str] = {}
        self._ctx = ctx
        self._ctx_text = self._text_of(ctx)

    def lines(self, stream: list) -> list[str]:
        out: list[str] = []
        append = out.append
        items = iter(stream)
        for item in items:
            kind = type(item)
            if kind is str:
                append(self._log(item, next(items)))
            elif kind is tuple:
                if item is not self._ctx:
                    self._ctx, self._ctx_text = item, self._text_of(item)
            else:
                append(self._record(item))
        return out

    def _log(self, name: str, value: Any) -> str:
        seq = self.seq
        self.seq += 1
        text = _scalar_text(value)
        if text is None:  # inf or nan, or not a plain value: the slow path
            from flor_cli.runtime.values import encode

            value, type_name = encode(value)
            return self._record({KIND: LOG, NAME: name, VALUE: value, VALUE_TYPE: type_name},
                                seq)
        return (f"{_LOG_SEQ}{seq}{_LOG_NAME}{_quote(name)}{_LOG_VALUE}{text}"
                f"{_LOG_CTX}{self._ctx_text}}}")

    def _record(self, record: dict, seq: int | None = None) -> str:
        if seq is None:
            seq = self.seq
            self.seq += 1
        record[SEQ] = seq
        if record.get(KIND) == LOG:
            record[CTX] = json.loads(self._ctx_text)
        try:
            return json.dumps(record, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):  # a value JSON cannot hold
            from flor_cli.runtime.values import encode

            return json.dumps({k: encode(v)[0] for k, v in record.items()},
                              separators=(",", ":"))

    def _text_of(self, ctx: tuple) -> str:
        """JSON of a flat loop context; consecutive contexts usually share their parent."""
        return f"{self._prefix(ctx[:-2])}{_quote(ctx[-2])}:{ctx[-1]}}}" if ctx else "{}"

    def _prefix(self, parent: tuple) -> str:
        """``{"epoch":3,`` for ``("epoch", 3)``: how every context inside it starts."""
        text = self._prefixes.get(parent)
        if text is None:
            if len(self._prefixes) > 10_000:
                self._prefixes.clear()
            text = "{" if not parent else (f"{self._prefix(parent[:-2])}"
                                           f"{_quote(parent[-2])}:{parent[-1]},")
            self._prefixes[parent] = text
        return text


def _scalar_text(value: Any) -> str | None:
    """JSON of a plain value exactly as ``json.dumps`` writes it; None for inf/nan and
    for anything that is not exactly a plain value."""
    kind = type(value)
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else None
    if kind is str:
        return _quote(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        try:
            return int.__repr__(value)
        except ValueError:  # more digits than Python writes: values.encode's form
            return None
    return "null" if value is None else None


class InProcessWriter:
    """Formats on the caller's thread: the fallback when no writer process is available."""

    def __init__(self, journal: Path, formatter: LineFormatter | None = None):
        self.formatter = formatter or LineFormatter()
        self.journal = JournalWriter(journal)

    def send(self, stream: list, ctx: tuple = ()) -> None:
        self.journal.write(self.formatter.lines(stream))

    def close(self) -> None:
        self.journal.close()


class WriterProcess:
    """The client side of the pipe to ``python -m flor_cli.runtime.writer``.

    ``send`` only marshals (records leave the training process's heap at once, as bytes
    the garbage collector never scans) and queues the bytes; a thread feeds the pipe, so
    a burst of logging never blocks training on a writer that is still catching up.

    The writer answers one byte for each frame whose lines are in the journal. A frame
    stays in ``in_flight`` until then, so when the writer dies (killed, disk full) every
    frame it did not write is still here for :meth:`undelivered` to hand to a fallback.
    """

    def __init__(self, journal: Path):
        self.journal = journal
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flor_cli.runtime.writer", str(journal)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=without_protocol())
        self.acks = self.proc.stdout.fileno()
        os.set_blocking(self.acks, False)
        self.outbox: queue.SimpleQueue[tuple[bytes, tuple] | None] = queue.SimpleQueue()
        self.in_flight: deque[tuple[bytes, tuple]] = deque()
        self.broken = False
        self.feeder = threading.Thread(target=self._feed, name="flor-pipe", daemon=True)
        self.feeder.start()

    def send(self, stream: list, ctx: tuple = ()) -> None:
        """Queue ``stream``, whose first records are in loop context ``ctx``."""
        if self.broken:
            raise BrokenPipeError("the journal writer process exited")
        try:
            data = marshal.dumps(stream)
        except ValueError:  # a subclass slipped into a dict record: plain JSON, as stored
            data = marshal.dumps([json.loads(json.dumps(r, default=str)) if type(r) is dict
                                  else r for r in stream])
        self.outbox.put((_FRAME.pack(len(data)) + data, ctx))

    def _feed(self) -> None:
        pipe = self.proc.stdin
        try:
            while (item := self.outbox.get()) is not None:
                self.in_flight.append(item)
                pipe.write(item[0])
                pipe.flush()
                self._read_acks()
            pipe.write(_FRAME.pack(0))
            pipe.close()
        except (BrokenPipeError, ValueError):
            self.broken = True

    def _read_acks(self, wait: bool = False) -> None:
        if wait:
            os.set_blocking(self.acks, True)
        while self.in_flight:
            try:
                acked = os.read(self.acks, 65536)
            except BlockingIOError:
                return
            if not acked:
                return  # the writer is gone
            for _ in acked:
                self.in_flight.popleft()

    def undelivered(self) -> list[tuple[list, tuple]]:
        """After the writer died: every (stream, context) it did not write, in order."""
        self.feeder.join()
        if not self.proc.stdout.closed:
            self._read_acks(wait=True)
        frames = list(self.in_flight)
        self.in_flight.clear()
        while True:
            try:
                item = self.outbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                frames.append(item)
        self.proc.wait()
        return [(marshal.loads(frame[_FRAME.size:]), ctx) for frame, ctx in frames]

    def close(self) -> None:
        """End the journal; BrokenPipeError if the writer died before writing it all
        (then :meth:`undelivered` has what it did not write)."""
        self.outbox.put(None)
        self.feeder.join()
        self.proc.wait()
        if not self.broken:
            self._read_acks(wait=True)
        self.proc.stdout.close()
        if self.broken or self.in_flight:
            self.outbox.put(None)  # undelivered() must not wait for a feeder that ended
            raise BrokenPipeError("the journal writer process exited")


def main(journal: str) -> None:
    """Append every record that arrives on stdin to the journal, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is training's; finish writing
    out = InProcessWriter(Path(journal))
    stdin, acks = sys.stdin.buffer, sys.stdout.fileno()
    try:
        while True:
            header = stdin.read(_FRAME.size)
            if len(header) < _FRAME.size:
                break  # training died: what arrived is all there is
            size = _FRAME.unpack(header)[0]
            if size == 0:
                break
            data = stdin.read(size)
            if len(data) < size:
                break
            out.send(marshal.loads(data))
            if acks >= 0:
                try:
                    os.write(acks, b".")  # this frame is in the journal
                except OSError:  # training died: nobody waits for acks; keep writing
                    acks = -1
    finally:
        out.close()


if __name__ == "__main__":
    main(sys.argv[1])
