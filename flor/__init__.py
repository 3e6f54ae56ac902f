"""``import flor``: the in-script API, a thin facade over :mod:`flor_cli.runtime.api`."""

from flor_cli.runtime.media import File, Image  # noqa: F401
from flor_cli.runtime.api import (  # noqa: F401
    arg,
    checkpointing,
    commit,
    dataframe,
    log,
    loop,
    plot,
    query,
    replay,
)

__all__ = ["File", "Image", "arg", "checkpointing", "commit", "dataframe", "log", "loop", "plot",
           "query", "replay"]
