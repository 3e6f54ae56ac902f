"""FlorDB's other spellings, as thin aliases onto today's runtime (docs/florDB-compat.md).

Scripts written for FlorDB 4 (``flor.iteration``, ``flor.restore``,
``flor.set_ckpt_interval``), FlorDB 2.x and pyflor (``MTK.checkpoints``, ``MTK.loop``,
``flor.it``, ``SkipBlock.step_into/end``, ``flor.flags``) run unchanged: each name maps
onto ``flor.loop``/``flor.checkpointing`` or, where FlorDB itself made it a no-op, does
nothing. Replay's discovery reads the loop aliases as ``flor.loop`` (:data:`LOOP_ALIASES`); it
imports this module, so the runtime API is imported only when an alias is called.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

# How discovery (services/replay/discover.py) spells these calls: flor.it(...),
# flor.MTK.loop(...) and, after `from flor import MTK [as Flor]`, MTK.loop(...).
LOOP_ALIASES = frozenset({"it", "MTK.loop", "Flor.loop"})
KITS = frozenset({"MTK", "Flor"})

# pyflor scripts set these by hand (flor.flags.NAME = ..., flor.flags.REPLAY = False);
# flor knows both from how the script was started, so they are accepted and ignored.
flags = SimpleNamespace(NAME=None, REPLAY=False, INDEX=None, MODE=None, PID=None,
                        EPSILON=None)


def _api():
    from flor_cli.runtime import api

    return api


def _loop_name(depth: int, base: int) -> str:
    """FlorDB 2 loops had no names: the outermost is ``epoch``, the one inside ``step``."""
    return {0: "epoch", 1: "step"}.get(depth - base, f"loop{depth - base}")


def it(iterable: Iterable) -> Iterator:
    """FlorDB 2's ``for epoch in flor.it(range(n))``: the main loop, named ``epoch``."""
    return _api().loop("epoch", iterable)


class MTK:
    """FlorDB 2's Model Training Kit: ``MTK.checkpoints(net, opt)`` then ``MTK.loop``."""

    @staticmethod
    def checkpoints(*objects: Any, **named: Any) -> None:
        """Checkpoint these objects from here to the end of the run, as a
        ``flor.checkpointing`` block around the rest of the script would."""
        block = _api().checkpointing(**{f"obj{i}": obj for i, obj in enumerate(objects)}, **named)
        block.__enter__()  # left when the run ends (the session closes its block)

    @staticmethod
    def loop(iterable: Iterable, name: str | None = None, probed: Any = None) -> Iterator:
        """``flor.loop`` named by its depth (``epoch``, then ``step``) unless named."""
        session = _api().current_session()
        if name is None:
            name = _loop_name(session.rule.depth, session.rule.base) if session else "epoch"
        return _api().loop(name, iterable)


Flor = MTK  # pyflor's README spells it `Flor.checkpoints` / `Flor.loop`


class SkipBlock:
    """pyflor's ``if SkipBlock.step_into("name"): for ...`` ... ``SkipBlock.end(net)``.

    The block always runs, recording as well as replaying: its ``for`` is a plain loop,
    so replay re-executes it (exact, without the memoized speed-up a ``flor.loop`` inside
    ``flor.checkpointing`` gets)."""

    @staticmethod
    def step_into(block_name: str = "", probed: Any = None) -> bool:
        return True

    @staticmethod
    def end(*objects: Any, values: Any = None) -> None:
        return None


@contextmanager
def iteration(name: str, idx: int | None, value: Any = None) -> Iterator[None]:
    """FlorDB 4's ``with flor.iteration("epoch", i, None):``: records inside carry
    ``{name: idx}`` in their context, as inside ``flor.loop`` (the loop is the caller's)."""
    session = _api().current_session()
    if session is None:
        yield
        return
    with session.iteration(name, idx):
        yield


def restore(path: Any = None, *target: Any, **keyed: Any) -> None:
    """FlorDB 4 retired it (replay restores state itself): a no-op, as there."""


def set_ckpt_interval(seconds: float) -> None:
    """FlorDB 4 retired it: flor chooses when to checkpoint (adaptively): a no-op."""
