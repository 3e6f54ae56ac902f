"""The runtime when a script is replayed: same loops, different side effects.

``flor replay`` runs the transplanted old script with ``FLOR_REPLAY`` describing the job.
Three modes follow from the level of the requested statements:

* ``prefix``: stop as soon as the main loop starts;
* ``skip`` (outer-loop and suffix statements): every nested loop whose checkpoint exists
  is skipped by restoring that checkpoint (RNG state included), and the rest of the
  outer iteration runs as it did originally; a thinned-out iteration re-executes, as
  does one whose checkpoint has an object in no store (deleted: ``notes.MISSING``);
* ``nested``: nested loops run for real in the epochs ``[lo, hi)`` given to this worker;
  earlier epochs are fast-forwarded as in ``skip`` and the script stops at ``hi``.

Only the requested names are recorded, and in ``nested`` mode only inside this worker's
epochs, so that workers never record the same value twice. ``flor.arg`` returns the
values the original run resolved.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from flor_cli.runtime.args import resolve, revive
from flor_cli.runtime.checkpoint import restore
from flor_cli.runtime.protocol import ReplayConfig
from flor_cli.runtime.session import Ctx, Session, ctx_dict
from flor_cli.storage.notes import (CKPT_LOAD, CTX, KIND, MISSING, ORDINAL, SECONDS, SHA,
                                    STARTUP, TIME, TIMING, loop_key, loop_key_of)
from flor_cli.storage.objects import MissingObject, ObjectStore


def _unambiguous(ckpts: list[dict]) -> dict[tuple[int, str, int], dict]:
    """Checkpoints by key; a key that several carry (a run recorded before blocks were
    numbered, with more than one block) is left out: its nested loop re-runs, exactly."""
    keys = [loop_key_of(c) for c in ckpts]
    counts = Counter(keys)
    return {k: c for k, c in zip(keys, ckpts) if counts[k] == 1}


class ReplaySession(Session):
    keeps_all = False

    def __init__(self, config: ReplayConfig, store: ObjectStore):
        # a run that entered flor.checkpointing had its main loop there: loops before it
        # are plain from the start (recording could only learn that when the block began)
        super().__init__(Path(config.journal), store, kwargs={}, t0=time.time(),
                         expect_block=config.checkpointing)
        self.names = set(config.names)
        self.mode = config.mode
        self.recorded_args = config.args
        self.lo, self.hi = config.range or (0, None)
        self.ckpts = _unambiguous(config.ckpts)
        self.active = self.lo == 0
        from flor_cli.runtime.api import process_start

        # what this worker paid before replaying: interpreter start and imports, or
        # (forked from a fork server that paid those) the fork
        self.emit({KIND: TIME, TIMING: STARTUP, SECONDS: round(time.time() - process_start(), 6)})

    def log(self, name: str, value: Any) -> None:
        if self.active and name in self.names:
            super().log(name, value)

    def arg(self, name: str, default: Any) -> Any:
        if name not in self.recorded_args:
            return resolve(name, {}, default)  # the default, or no default: an error
        return revive(self.recorded_args[name], default)

    def on_main_start(self) -> None:
        super().on_main_start()
        if self.mode == "prefix":
            self.stop()

    def on_outer_iteration(self, index: int) -> None:
        if self.hi is not None and index >= self.hi:
            self.stop()
        if self.mode == "nested":
            self.active = index >= self.lo

    def skip_nested(self, outer_ctx: Ctx, ordinal: int, frame: FrameType) -> bool:
        if self.mode == "nested" and self.active:
            return False
        outer = ctx_dict(outer_ctx)
        entry = self.ckpts.get(loop_key(self.rule.block, outer, ordinal))
        if entry is None:
            return False  # thinned out or never taken: re-execute, which is exact too
        started = time.perf_counter()
        try:
            restore(self.objects, entry, self.store, frame)
        except MissingObject as e:  # deleted from the store: the driver says so
            self.emit({KIND: MISSING, CTX: outer, ORDINAL: ordinal, SHA: e.digest})
            return False
        self.emit({KIND: TIME, TIMING: CKPT_LOAD, CTX: outer, ORDINAL: ordinal,
                   SECONDS: round(time.perf_counter() - started, 6)})
        return True

    def new_checkpointer(self, objects: dict[str, Any]) -> None:
        return None  # replay restores checkpoints; it takes none

    def stop(self) -> None:
        """End the replayed script here; the atexit hook flushes what it recorded."""
        raise SystemExit(0)
