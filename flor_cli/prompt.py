"""Asking before something long (replay): on the terminal, or from a piped answer.

FlorDB asked with ``input()``, so ``echo y | python -m flordb replay x`` worked; flor
reads one line from standard input when it is not a terminal, and refuses only when there
is nothing to read (then ``--yes``/``yes=True`` says it).
"""

from __future__ import annotations

import sys

from flor_cli.errors import UserError

YES = ("y", "yes")


def confirmed(question: str, skip_hint: str = "--yes") -> bool:
    """Whether the user answers yes to ``question`` (``[y/N]``, on stderr). Without a
    terminal the piped line is read first, so that nothing is asked when nothing came."""
    if sys.stdin is not None and sys.stdin.isatty():
        print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in YES
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if not answer:
        raise UserError(f"there is no terminal to ask on and nothing was piped in: pass "
                        f"{skip_hint}, or pipe the answer (echo y | ...)")
    print(f"{question} [y/N] {answer.strip()}", file=sys.stderr)  # as a terminal shows it
    return answer.strip().lower() in YES
