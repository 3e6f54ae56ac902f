"""A do-nothing ``flor`` for baselines: first on PYTHONPATH, it shadows the real one.

The script does exactly the same work (``--kwargs`` still size the job, parsed and cast
by flor's own functions) but records nothing, so the time a benchmark measures on top of
this is what recording costs.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any, Iterable, Iterator

from flor_cli.runtime.args import cast, split_kwargs

sys.argv[1:], _kwargs = split_kwargs(sys.argv[1:])


def arg(name: str, default: Any) -> Any:
    return cast(name, _kwargs[name], default) if name in _kwargs else default


def log(name: str, value: Any) -> Any:
    return value


def loop(name: str, iterable: Iterable) -> Iterator:
    return iter(iterable)


def checkpointing(**objects: Any) -> nullcontext:
    return nullcontext()


def commit() -> None:
    pass
