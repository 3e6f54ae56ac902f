"""Progress bars for slow work (cache rebuild, pull, replay): tqdm on standard error,
only when it is a terminal, and only once the work has taken half a second.

Piped or redirected output gets nothing (no bar, no ANSI codes); ``FLOR_PROGRESS=0``
turns bars off on a terminal too. tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import os
import sys
from typing import Any

DELAY_SECONDS = 0.5  # work that ends sooner never shows a bar


class _Silent:
    """What a caller gets when no bar is shown: the same calls, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def bar(total: float, desc: str, unit: str = "it", **options: Any) -> Any:
    """A tqdm bar on stderr with rate and ETA (a context manager), or a silent stand-in."""
    if os.environ.get("FLOR_PROGRESS") == "0" or not _terminal():
        return _Silent()
    from tqdm import tqdm

    options = {"leave": False, "delay": DELAY_SECONDS, "mininterval": 0.2,
               "dynamic_ncols": True, **options}
    return tqdm(total=total, desc=f"flor: {desc}", unit=unit, file=sys.stderr, **options)


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed by the caller
        return False
