"""The live state of one run inside the training process: loop context, records, journal.

Hot path: ``flor.log`` appends ``(name, value, ctx)`` to a deque and returns; a
background thread turns queued records into JSON lines and appends them to the journal
every half second. The loop context is an immutable tuple of ``(loop name, index)``
pairs, replaced (not mutated) once per iteration, so a queued record can hold a
reference to it instead of a copy.

Loop roles: inside ``flor.checkpointing`` the outermost ``flor.loop`` is the *outer*
loop (one iteration per epoch) and a ``flor.loop`` directly inside it is a *nested* loop,
whose end is where checkpoints are taken and where replay skips ahead. Without
``flor.checkpointing`` the outermost loop is still the outer loop, for timings.

A Session in replay mode (see :mod:`replay_mode`) shares all of this and changes three
things: which records are kept, whether nested loops run, and where the script stops.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, Iterable, Iterator

from flor_cli.runtime import values
from flor_cli.runtime.checkpoint import Checkpointer
from flor_cli.storage.journal import JournalWriter
from flor_cli.storage.objects import ObjectStore

FLUSH_SECONDS = 0.5
Ctx = tuple  # tuple[tuple[str, int], ...]


class Session:
    def __init__(self, journal: Path, store: ObjectStore, kwargs: dict[str, str], t0: float):
        self.journal_path = journal
        self.store = store
        self.kwargs = kwargs
        self.t0 = t0
        self.ctx: Ctx = ()
        self.depth = 0
        self.base_depth = 0  # loop depth at which the checkpointed outer loop lives
        self.queue: deque = deque()
        self.seq = 0
        self.checkpointer: Checkpointer | None = None
        self.objects: dict[str, Any] = {}
        self.outer_index = -1
        self.outer_last = False
        self.nested_ordinal = 0
        self.main_started = False
        self.main_ended_at: float | None = None
        self._ctx_prefixes: dict[Ctx, str] = {}
        self._last_ctx: Ctx | None = None
        self._last_ctx_text = ""
        self._lock = threading.Lock()
        self._writer = JournalWriter(journal)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="flor-flush", daemon=True)
        self._flusher.start()
        self.closed = False

    # -- records -----------------------------------------------------------------------

    def log(self, name: str, value: Any) -> None:
        if type(value) in _FAST:
            self.queue.append((name, value, self.ctx))
        else:
            self.queue.append((name, values.encode(value), self.ctx, True))

    def emit(self, record: dict) -> None:
        self.queue.append(record)

    def arg(self, name: str, default: Any) -> Any:
        from flor_cli.runtime.args import cast

        value = cast(name, self.kwargs[name], default) if name in self.kwargs else default
        self.emit({"t": "arg", "n": name, "v": values.encode(value)[0]})
        return value

    # -- loops -------------------------------------------------------------------------

    def loop(self, name: str, iterable: Iterable) -> Iterator:
        parent, depth = self.ctx, self.depth
        self.depth += 1
        try:
            if depth == self.base_depth:
                yield from self._outer(name, iterable, parent)
            elif depth == self.base_depth + 1 and self.outer_index >= 0:
                yield from self._nested(name, iterable, parent)
            else:
                for i, item in enumerate(iterable):
                    self.ctx = parent + ((name, i),)
                    yield item
        finally:
            self.depth, self.ctx = depth, parent

    def _outer(self, name: str, iterable: Iterable, parent: Ctx) -> Iterator:
        self.on_main_start()
        length = _len(iterable)
        for i, item in enumerate(iterable):
            self.ctx = ctx = parent + ((name, i),)
            self.on_outer_iteration(i)
            self.outer_index, self.nested_ordinal = i, 0
            self.outer_last = length is not None and i == length - 1
            started = time.perf_counter()
            yield item
            self.emit({"t": "time", "k": "outer", "c": dict(ctx),
                       "sec": round(time.perf_counter() - started, 6)})
        self.outer_index = -1
        self.main_ended_at = time.time()

    def _nested(self, name: str, iterable: Iterable, parent: Ctx) -> Iterator:
        ordinal = self.nested_ordinal
        self.nested_ordinal += 1
        if self.skip_nested(parent, ordinal):
            return
        started = time.perf_counter()
        for i, item in enumerate(iterable):
            self.ctx = parent + ((name, i),)
            yield item
        seconds = time.perf_counter() - started
        self.emit({"t": "time", "k": "nested", "c": dict(parent), "i": ordinal,
                   "sec": round(seconds, 6)})
        if self.checkpointer is not None:
            self.checkpointer.maybe_capture(dict(parent), ordinal, self.outer_index,
                                            self.outer_last, seconds)

    def on_main_start(self) -> None:
        if not self.main_started:
            self.main_started = True
            self.emit({"t": "time", "k": "prefix", "sec": round(time.time() - self.t0, 6)})

    def on_outer_iteration(self, index: int) -> None:
        """Replay hooks in here to stop or to narrow recording to its epochs."""

    def skip_nested(self, outer_ctx: Ctx, ordinal: int) -> bool:
        """Replay skips a nested loop by restoring its checkpoint; recording never does."""
        return False

    # -- checkpointing -----------------------------------------------------------------

    def enter_checkpointing(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.base_depth = self.depth
        self.checkpointer = Checkpointer(objects, self.store, self.emit)

    def exit_checkpointing(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
            self.checkpointer = None
        self.base_depth = 0

    # -- journal -----------------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            queue, line = self.queue, self._line
            lines = [line(queue.popleft()) for _ in range(len(queue))]
            if lines and self._writer.fd >= 0:
                self._writer.write(lines)

    def _line(self, item) -> str:
        """One journal line, as ``json.dumps`` would write it, without its per-call cost.

        This runs once per ``flor.log`` and competes with training for the interpreter.
        """
        seq = self.seq
        self.seq += 1
        if type(item) is dict:
            item["s"] = seq
            return json.dumps(item, separators=(",", ":"))
        if len(item) == 4:
            name, (value, type_name), ctx, _ = item
            text = json.dumps(value)
        else:
            (name, value, ctx), type_name = item, None
            text = _scalar_text(value)
            if text is None:  # inf or nan: not JSON
                value, type_name = values.encode(value)
                text = json.dumps(value)
        line = (f'{{"t":"log","s":{seq},"n":{_quote(name)},"v":{text},'
                f'"c":{self._ctx_text(ctx)}')
        return line + (f',"ty":"{type_name}"}}' if type_name else "}")

    def _ctx_text(self, ctx: Ctx) -> str:
        """JSON of a loop context; consecutive records usually share one, or its parent."""
        if ctx is not self._last_ctx:
            self._last_ctx = ctx
            self._last_ctx_text = (f"{self._ctx_prefix(ctx[:-1])}{_quote(ctx[-1][0])}:"
                                   f"{ctx[-1][1]}}}") if ctx else "{}"
        return self._last_ctx_text

    def _ctx_prefix(self, parent: Ctx) -> str:
        """``{"epoch":3,`` for ``(("epoch", 3),)``: how every context inside it starts."""
        text = self._ctx_prefixes.get(parent)
        if text is None:
            if len(self._ctx_prefixes) > 10_000:
                self._ctx_prefixes.clear()
            text = "{" if not parent else (f"{self._ctx_prefix(parent[:-1])}"
                                           f"{_quote(parent[-1][0])}:{parent[-1][1]},")
            self._ctx_prefixes[parent] = text
        return text

    def close(self, end: dict) -> None:
        """Flush everything (checkpoints first: their records join the queue) and unlock."""
        if self.closed:
            return
        self.closed = True
        self.exit_checkpointing()
        if self.main_ended_at is not None:
            self.emit({"t": "time", "k": "suffix",
                       "sec": round(time.time() - self.main_ended_at, 6)})
        self._stop.set()
        self._flusher.join()
        self.emit({"t": "end", **end})
        self.flush()
        self._writer.close()


_FAST = {float, int, str, bool, type(None)}


def _scalar_text(value: Any) -> str | None:
    """JSON of a ``_FAST`` value exactly as ``json.dumps`` writes it; None for inf/nan."""
    kind = type(value)
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else None
    if kind is str:
        return _quote(value)
    if kind is bool:
        return "true" if value else "false"
    return "null" if value is None else int.__repr__(value)


def _len(iterable: Iterable) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
