"""``import flor``: the in-script API, a thin facade over :mod:`flor_cli.runtime.api`."""

from flor_cli.runtime.api import (  # noqa: F401
    arg,
    checkpointing,
    commit,
    dataframe,
    log,
    loop,
    query,
    replay,
)

__all__ = ["arg", "checkpointing", "commit", "dataframe", "log", "loop", "query", "replay"]
