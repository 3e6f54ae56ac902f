"""The live state of one run inside the training process: loop context, records, journal.

Hot path: ``flor.log`` puts ``name, value`` on a deque and returns; every 50 ms a
background thread marshals what is queued and hands it to the writer process (see
:mod:`writer`), which formats and appends the journal lines.

The queue is a *stream*, not a list of records, so that logging allocates nothing the
garbage collector tracks (a tuple per record, kept alive in the queue, made collections
cost a third of a call). Its items:

* ``name, value`` — a log record of a plain value (str name, then the value; the pair is
  put with one ``deque.extend``, which no other thread can split);
* a tuple — the loop context from here on, flat: ``("epoch", 3, "step", 7)``; each loop
  puts one per iteration and one when it ends, so the writer knows the context of every
  record without the record carrying it;
* a dict — any other record (args, timings, checkpoints, a non-plain value's log).

Loop roles (main, nested, plain) and levels follow the main-loop rule, stated once in
:mod:`mainloop`: a nested loop's end is where checkpoints are taken and where replay
skips ahead. A loop taken for the main loop before a ``flor.checkpointing`` block starts
loses the role when it does: the block's loop records a new ``prefix`` timing, and
readers of a run's timings start from its last one (:func:`main_timings`).

A Session in replay mode (see :mod:`replay_mode`) shares all of this and changes three
things: which records are kept, whether nested loops run, and where the script stops.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Iterable, Iterator

from flor_cli.runtime import media, values
from flor_cli.runtime.checkpoint import Checkpointer
from flor_cli.runtime import mainloop
from flor_cli.runtime.effects import loop_effects
from flor_cli.runtime.mainloop import MainLoopRule
from flor_cli.runtime.writer import InProcessWriter, LineFormatter, WriterProcess
from flor_cli.storage.notes import (ARG, BLOCK, CTX, END, KIND, LOG, LOST, NAME, NESTED,
                                    ORDINAL, OUTER, PREFIX, SECONDS, SUFFIX, TIME, TIMING,
                                    VALUE, VALUE_TYPE)
from flor_cli.storage.objects import ObjectStore

FLUSH_SECONDS = 0.05
Ctx = tuple  # flat: (loop name, index, loop name, index, ...)


def ctx_dict(ctx: Ctx) -> dict[str, int]:
    """``{"epoch": 3, "step": 7}``: how a context is stored in records."""
    return dict(zip(ctx[::2], ctx[1::2]))


class Session:
    keeps_all = True  # every record is kept (replay keeps only the asked names)

    def __init__(self, journal: Path, store: ObjectStore, kwargs: dict[str, str], t0: float,
                 expect_block: bool = False):
        self.journal_path = journal
        self.store = store
        self.kwargs = kwargs
        self.t0 = t0
        self.ctx: Ctx = ()
        self.rule = MainLoopRule(expect_block)
        self.queue: deque = deque()
        self.sent = 0  # stream items handed to the writer: a fallback numbers on from here
        self.sent_ctx: Ctx = ()  # the context at the end of what was handed to the writer
        self.checkpointer: Checkpointer | None = None
        self.objects: dict[str, Any] = {}
        self.outer_index = -1  # the main loop's iteration; -1 outside it
        self.outer_last = False
        self.nested_ordinal = 0
        self.main_started = False
        self.main_ended_at: float | None = None
        self.args_read: dict[str, None] = {}  # flor.arg names, in the order read
        self._lock = threading.Lock()
        self._sink = _start_writer(journal)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="flor-flush", daemon=True)
        self._flusher.start()
        self.closed = False
        self.lost = 0  # records that could not be written (see _fall_back)

    # -- records -----------------------------------------------------------------------

    def log(self, name: str, value: Any) -> None:
        if type(value) in values.PLAIN_TYPES:
            self.queue.extend((name, value))
        else:
            if media.is_media(value):  # an image or a file: stored, a reference logged
                value, type_name = media.store(name, value, self.store)
            else:
                value, type_name = values.encode(value)
            self.queue.append({KIND: LOG, NAME: name, VALUE: value, VALUE_TYPE: type_name})

    def emit(self, record: dict) -> None:
        self.queue.append(record)

    def arg(self, name: str, default: Any) -> Any:
        from flor_cli.runtime.args import resolve

        value = resolve(name, self.kwargs, default)
        self.args_read[name] = None
        self.emit({KIND: ARG, NAME: name, VALUE: values.encode(value)[0]})
        return value

    def unread_kwargs(self) -> str | None:
        """The line naming ``--kwargs`` that no ``flor.arg`` has read, if any."""
        from flor_cli.runtime.args import unknown_kwargs_line

        return unknown_kwargs_line(self.kwargs, self.args_read)

    # -- loops -------------------------------------------------------------------------

    def loop(self, name: str, iterable: Iterable) -> Iterator:
        """A generator for the loop's role, by the main-loop rule (see mainloop).

        Returning the role's generator itself (rather than delegating to it) saves a
        generator frame per iteration, which matters for loops around ``flor.log``.
        A nested loop keeps the frame that called ``flor.loop`` (two frames up: the
        user's code calls ``flor.loop``, which calls this), whose names the loop changes.
        """
        role = self.rule.role()
        if role == mainloop.MAIN:
            return self._outer(name, iterable, self.ctx)
        if role == mainloop.NESTED:
            frame = sys._getframe(2)
            return self._nested(name, iterable, self.ctx, frame, frame.f_lineno)
        return self._inner(name, iterable, self.ctx)

    def _inner(self, name: str, iterable: Iterable, parent: Ctx) -> Iterator:
        self.rule.enter_loop(mainloop.PLAIN)
        mark = self.queue.append
        try:
            for i, item in enumerate(iterable):
                self.ctx = ctx = parent + (name, i)
                mark(ctx)
                yield item
        finally:
            self._leave(parent, mainloop.PLAIN)

    @contextmanager
    def iteration(self, name: str, index: int | None) -> Iterator[None]:
        """One iteration of a loop that is the caller's own (FlorDB's ``flor.iteration``):
        records inside carry ``{name: index}`` in their context, as in a plain
        ``flor.loop``."""
        parent = self.ctx
        self.rule.enter_loop(mainloop.PLAIN)
        self.ctx = parent + (name, index)
        self.queue.append(self.ctx)
        try:
            yield
        finally:
            self._leave(parent, mainloop.PLAIN)

    def _leave(self, parent: Ctx, role: str, serial: int | None = None) -> None:
        self.rule.exit_loop(role, serial)
        self.ctx = parent
        self.queue.append(parent)

    def _outer(self, name: str, iterable: Iterable, parent: Ctx) -> Iterator:
        """The main loop, for as long as it keeps the role (``serial``; see mainloop)."""
        rule = self.rule
        serial = rule.enter_loop(mainloop.MAIN)
        try:
            self.on_main_start()
            length = _len(iterable)
            for i, item in enumerate(iterable):
                self.ctx = ctx = parent + (name, i)
                self.queue.append(ctx)
                if rule.serial != serial:
                    yield item
                    continue
                self.on_outer_iteration(i)
                rule.next_iteration()
                self.outer_index, self.nested_ordinal = i, 0
                self.outer_last = length is not None and i == length - 1
                started = time.perf_counter()
                yield item
                if rule.serial == serial:
                    self.emit({KIND: TIME, TIMING: OUTER, BLOCK: rule.block,
                               CTX: ctx_dict(ctx),
                               SECONDS: round(time.perf_counter() - started, 6)})
            if rule.serial == serial:
                self.main_ended_at = time.time()
        finally:
            if rule.serial == serial:
                self.outer_index = -1
            self._leave(parent, mainloop.MAIN, serial)

    def _nested(self, name: str, iterable: Iterable, parent: Ctx, frame: FrameType,
                line: int) -> Iterator:
        ordinal = self.nested_ordinal
        self.nested_ordinal += 1
        if self.skip_nested(parent, ordinal, frame):
            return
        self.rule.enter_loop(mainloop.NESTED)
        mark = self.queue.append
        try:
            started = time.perf_counter()
            for i, item in enumerate(iterable):
                self.ctx = ctx = parent + (name, i)
                mark(ctx)
                yield item
            seconds = time.perf_counter() - started
        finally:
            self._leave(parent, mainloop.NESTED)
        outer_ctx = ctx_dict(parent)
        self.emit({KIND: TIME, TIMING: NESTED, BLOCK: self.rule.block, CTX: outer_ctx,
                   ORDINAL: ordinal, SECONDS: round(seconds, 6)})
        if self.checkpointer is not None:
            self.checkpointer.maybe_capture(outer_ctx, ordinal, self.outer_index,
                                            self.outer_last, seconds, frame,
                                            loop_effects(frame.f_code.co_filename, line))

    def on_main_start(self) -> None:
        if not self.main_started:
            if self.rule.block <= 0:  # the first main loop: every arg that matters is read
                self.fail_on_unread_kwargs()
            self.main_started = True
            self.emit({KIND: TIME, TIMING: PREFIX, SECONDS: round(time.time() - self.t0, 6)})

    def on_outer_iteration(self, index: int) -> None:
        """Replay hooks in here to stop or to narrow recording to its epochs."""

    def skip_nested(self, outer_ctx: Ctx, ordinal: int, frame: FrameType) -> bool:
        """Replay skips a nested loop by restoring its checkpoint; recording never does."""
        return False

    def fail_on_unread_kwargs(self) -> None:
        """Stop before training with a misspelt ``--kwargs`` silently ignored: exit 2,
        and the run is aborted (nothing of it is kept). A name the script's source
        mentions may still be read later: that one is only checked at exit."""
        from flor_cli.runtime.args import not_in_sources, unknown_kwargs_line

        unread = [n for n in self.kwargs if n not in self.args_read]
        unknown = not_in_sources(unread) if unread else []
        if unknown:
            import sys

            print(f"flor: {unknown_kwargs_line(unknown, self.args_read)}", file=sys.stderr)
            self.abort()
            raise SystemExit(2)

    def abort(self) -> None:
        """Bad input: the run is dropped when folded, and nothing more is said of it."""
        self.kwargs = {}
        self.emit({KIND: END, "aborted": True})

    # -- checkpointing -----------------------------------------------------------------

    def enter_checkpointing(self, objects: dict[str, Any]) -> None:
        if self.rule.enter_block():
            self.main_started = False  # that loop was not the main loop: a new prefix
        self.outer_index = -1
        self.objects = objects
        self.checkpointer = self.new_checkpointer(objects)

    def new_checkpointer(self, objects: dict[str, Any]) -> Checkpointer | None:
        return Checkpointer(objects, self.store, self.emit, self.rule.block)

    def exit_checkpointing(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
            self.checkpointer = None
        self.rule.exit_block()

    # -- journal -----------------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            queue = self.queue
            # len() is read once: a name/value pair put after it waits, whole, for the next
            batch = [queue.popleft() for _ in range(len(queue))]
            if batch:
                self._send(batch)

    def _send(self, batch: list) -> None:
        ctx = self.sent_ctx
        try:
            self._sink.send(batch, ctx)
        except OSError:
            self._fall_back([(batch, ctx)])
        self.sent += len(batch)
        self.sent_ctx = _last_ctx(batch, ctx)

    def _fall_back(self, pending: list[tuple[list, Ctx]]) -> None:
        """The writer process died (killed, disk full) or the journal cannot be written:
        format here, numbering on, what it did not write, then ``pending``.

        An in-process writer already holds the journal's lock; taking it again through a
        second descriptor would wait on this very process forever, so it is kept.
        What cannot be written even here is counted in ``lost``, and the run's status
        will say so.
        """
        sink = self._sink
        if isinstance(sink, WriterProcess):
            pending = sink.undelivered() + pending
            try:
                self._sink = InProcessWriter(self.journal_path,
                                             LineFormatter(self.sent, pending[0][1]))
            except OSError:
                self.lost += sum(_records(stream) for stream, _ in pending)
                return
        for stream, _ in pending:
            try:
                self._sink.send(stream)
            except OSError:
                self.lost += _records(stream)

    def close(self, end: dict) -> None:
        """Flush everything (checkpoints first: their records join the queue) and unlock."""
        if self.closed:
            return
        self.closed = True
        self.exit_checkpointing()
        if self.kwargs:  # no main loop to stop at, or a name read after it: say it now
            line = self.unread_kwargs()
            if line is not None:
                import sys

                print(f"flor: warning: {line}", file=sys.stderr)
        if self.main_ended_at is not None:
            self.emit({KIND: TIME, TIMING: SUFFIX,
                       SECONDS: round(time.time() - self.main_ended_at, 6)})
        self._stop.set()
        self._flusher.join()
        self.emit({KIND: END, **end})
        self.flush()
        try:
            self._sink.close()
        except OSError:  # the writer died at the end: write what it did not, here
            self._fall_back([])
            if isinstance(self._sink, InProcessWriter):
                self._sink.close()
        if self.lost:
            self._report_lost()

    def _report_lost(self) -> None:
        """Say on stderr that records were lost, and in the journal if it takes a line:
        its fold then marks the run ``incomplete``, never ``ok``."""
        import sys

        from flor_cli.storage.journal import JournalWriter

        try:
            writer = JournalWriter(self.journal_path)
            try:
                writer.write([json.dumps({KIND: END, LOST: self.lost})])
            finally:
                writer.close()
        except OSError:
            pass
        print(f"flor: {self.lost} record(s) of this run could not be written to its "
              f"journal ({self.journal_path}); the run is marked incomplete",
              file=sys.stderr)


def _records(stream: list) -> int:
    """How many records a slice of the stream holds (a name and its value are one)."""
    count = 0
    items = iter(stream)
    for item in items:
        if type(item) is str:
            next(items, None)
        if type(item) is not tuple:
            count += 1
    return count


def _start_writer(journal: Path) -> WriterProcess | InProcessWriter:
    try:
        return WriterProcess(journal)
    except OSError:
        return InProcessWriter(journal)


def _last_ctx(batch: list, before: Ctx) -> Ctx:
    """The context in force after ``batch``; in a loop, its last few items hold it."""
    for item in reversed(batch):
        if type(item) is tuple:
            return item
    return before


def _len(iterable: Iterable) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except (TypeError, OverflowError):  # no length, or one past sys.maxsize (range(10**26))
        return None
