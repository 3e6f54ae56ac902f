"""Logged images and files, read back: their references from the cache, their bytes from
the object stores (this clone's, else the shared ``flor.store``).

References come from notes that may have been pulled from someone else's clone; only
those :func:`flor_cli.storage.media.parse` accepts are listed, and bytes are only ever
read (never unpickled or executed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from flor_cli.services import query
from flor_cli.storage import cache
from flor_cli.storage.cache import quote_literal
from flor_cli.storage.git import Git
from flor_cli.storage.media import MEDIA_TYPES, MediaRef, parse
from flor_cli.storage.objects import ObjectStore


@dataclass(frozen=True)
class LoggedFile:
    run: str
    name: str
    ctx: dict
    replayed: bool
    ref: MediaRef


def _in(values: Iterable[str]) -> str:
    return ",".join(map(quote_literal, values))


def media_names(git: Git) -> list[str]:
    """The names under which images or files were logged."""
    _, rows = query.sql(git, f"SELECT DISTINCT name FROM logs WHERE type IN ({_in(MEDIA_TYPES)}) "
                             "ORDER BY name")
    return [name for (name,) in rows]


def logged(git: Git, names: Sequence[str] = (), runs: Sequence[str] | None = None
           ) -> Iterator[LoggedFile]:
    """Every logged image/file (of ``names``, of ``runs``), in run and record order, read
    as it is iterated (a run may have logged millions)."""
    where = [f"type IN ({_in(MEDIA_TYPES)})"]
    if names:
        where.append(f"name IN ({_in(names)})")
    if runs is not None:
        where.append(f"run IN ({_in(runs)})")
    with cache.connection(git, readonly=True) as db:
        for run, name, value, ctx, rp in db.execute(
                "SELECT l.run, name, value, ctx, rp FROM logs l JOIN runs r "
                f"USING (run) WHERE {' AND '.join(where)} "
                "ORDER BY r.start, l.run, l.rp IS NOT NULL, l.rp, l.seq"):
            ref = parse(value)
            if ref is not None:
                yield LoggedFile(run, name, json.loads(ctx or "{}"), rp is not None, ref)


def read(git: Git, ref: MediaRef, held: Sequence[ObjectStore | None] | None = None
         ) -> bytes | None:
    """The bytes of a logged file, or None when neither store has them; ``held``: the
    stores to read (``stores(git)``, looked up once by a caller reading many files)."""
    from flor_cli.storage.objects import stores

    from flor_cli.storage.notes import warn
    from flor_cli.storage.objects import BadObject

    for store in held if held is not None else stores(git):
        if store is not None and store.has(ref.sha):
            try:
                return store.get(ref.sha)
            except BadObject as e:  # changed in the store: never shown or exported
                warn(str(e))
    return None


class Shown:
    """A logged image or file as a notebook displays it: the image itself (``_repr_png_``)
    and where its bytes are (``path``)."""

    def __init__(self, git: Git, ref: MediaRef):
        self.ref = ref
        self._git = git

    @property
    def path(self) -> Path | None:
        from flor_cli.storage.objects import stores

        return next((s.path(self.ref.sha) for s in stores(self._git)
                     if s is not None and s.has(self.ref.sha)), None)

    def data(self) -> bytes | None:
        return read(self._git, self.ref)

    def _repr_png_(self) -> bytes | None:
        return self.data() if self.ref.mime == "image/png" else None

    def __repr__(self) -> str:
        size = f" {self.ref.width}x{self.ref.height}" if self.ref.width is not None else ""
        return f"<{self.ref.file}{size} {self.ref.sha[:10]}>"


def displayable(git: Git, frame):
    """``flor.dataframe``'s frame with each logged image/file as a :class:`Shown`."""
    for name in set(media_names(git)) & set(frame.columns):
        frame[name] = [_shown(git, v) for v in frame[name]]
    return frame


def _shown(git: Git, value):
    ref = parse(value)
    return value if ref is None else Shown(git, ref)
