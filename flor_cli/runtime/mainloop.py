"""The main-loop rule: which ``flor.loop`` is the main loop, which are nested, and the
level (phase of training) of the code running at any point.

* The *main* loop is the first ``flor.loop`` started at the top of a
  ``flor.checkpointing`` block (one iteration per epoch), or, in a script that never
  enters a block, its first outermost ``flor.loop``. Each block has its own main loop
  (a sweep enters one block per setting).
* A ``flor.loop`` started directly inside the main loop is a *nested* loop: where its
  checkpoint is taken and where replay skips ahead. Every other ``flor.loop`` is *plain*:
  it only adds to the loop context.
* Until a script enters a block it cannot be known whether it will, so an outermost
  loop before the first block is taken as the main loop (``expect_block=False``); when a
  block then starts, that loop loses the role (:meth:`enter_block` says so, and the
  block's loop records a new ``prefix``). Whoever knows the script enters a block — a
  replay of a run that did, discovery reading the whole source — passes
  ``expect_block=True`` and loops outside blocks are plain from the start.
* Levels: ``prefix`` before the main loop, ``outer_before``/``outer_after`` in the main
  loop before/after a nested loop of the same iteration, ``nested`` inside a nested loop
  (at any depth), ``suffix`` after the main loop.

One statement of the rule for the three readers that need it: the runtime (which loop
checkpoints; :mod:`session`), replay's discovery (the level of each ``flor.log`` in the
source) and ``flor lint``. Standard library only, no imports: the runtime stays light.
"""

from __future__ import annotations

MAIN, NESTED, PLAIN = "main", "nested", "plain"
LEVELS = ("prefix", "outer_before", "outer_after", "nested", "suffix")


class MainLoopRule:
    """Follows a script through blocks and loops as it runs (or as a reader walks it).

    Callers report :meth:`enter_block`/:meth:`exit_block` around ``flor.checkpointing``;
    around each ``flor.loop``, :meth:`enter_loop` with the role :meth:`role` gives it
    (asked when ``flor.loop`` is called, entered when the loop starts running) and
    :meth:`exit_loop`; and :meth:`next_iteration` at each iteration of the main loop.
    ``serial`` changes whenever a main loop starts or loses its role, so the code driving
    a main loop can tell whether it still is one.
    """

    def __init__(self, expect_block: bool = False) -> None:
        self.depth = 0  # flor.loops running
        self.base = 0  # loop depth of the current block's main loop
        self.in_block = False
        self.seen_block = expect_block
        self.main_running = False
        self.main_done = False
        self.nested_done = False  # a nested loop has ended in this main-loop iteration
        self.block = -1  # the current block's number, from 0; -1: none yet
        self.serial = 0

    def enter_block(self) -> bool:
        """A ``flor.checkpointing`` block starts; True if a loop before it had been taken
        for the main loop (running or done): it was not."""
        demoted = not self.seen_block and (self.main_running or self.main_done)
        self.main_running = self.main_done = self.nested_done = False
        self.serial += 1
        self.base = self.depth
        self.block += 1
        self.in_block = self.seen_block = True
        return demoted

    def exit_block(self) -> None:
        self.in_block = False
        self.base = 0

    def role(self) -> str:
        """The role of a ``flor.loop`` that would start now."""
        if (self.depth == self.base and not self.main_running and not self.main_done
                and (self.in_block or not self.seen_block)):
            return MAIN
        if self.depth == self.base + 1 and self.main_running:
            return NESTED
        return PLAIN

    def enter_loop(self, role: str) -> int:
        """A loop of ``role`` starts running; the ``serial`` a main loop holds its role by."""
        self.depth += 1
        if role == MAIN:
            self.main_running = True
            self.serial += 1
        return self.serial

    def next_iteration(self) -> None:
        """The main loop starts an iteration: no nested loop has run in it yet."""
        self.nested_done = False

    def exit_loop(self, role: str, serial: int | None = None) -> None:
        """A loop of ``role`` ended; a main loop gives the ``serial`` it started with."""
        self.depth -= 1
        if role == NESTED and self.main_running:
            self.nested_done = True
        elif role == MAIN and self.main_running and serial == self.serial:
            self.main_running = False
            self.main_done = True

    @property
    def level(self) -> str:
        """The level of code running now."""
        if not self.main_running:
            return "suffix" if self.main_done else "prefix"
        if self.depth > self.base + 1:
            return "nested"
        return "outer_after" if self.nested_done else "outer_before"
