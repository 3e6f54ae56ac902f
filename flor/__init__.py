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
from flor_cli.runtime.compat import (  # noqa: F401  FlorDB's spellings (docs/florDB-compat.md)
    MTK,
    Flor,
    SkipBlock,
    flags,
    it,
    iteration,
    restore,
    set_ckpt_interval,
)
from flor_cli.services.sweep import batch, cross_prod  # noqa: F401

__all__ = ["File", "Image", "arg", "batch", "checkpointing", "commit", "cross_prod",
           "dataframe", "log", "loop", "plot", "query", "replay", "MTK", "Flor", "SkipBlock",
           "flags", "it", "iteration", "restore", "set_ckpt_interval"]
