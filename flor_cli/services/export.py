"""``flor export NAME... -o DIR``: logged images and files written out as files.

``DIR/<run>/<name>[.<loop>-<index>...]<suffix>``: one folder per run, one file per logged
value, named by its loop context so that a value logged every epoch gives a file per
epoch. Every name that becomes a path was checked where the reference was parsed
(:mod:`flor_cli.storage.media`) or is made safe here (run ids), so a pulled note cannot
write outside DIR. Each file appears whole (written aside, then renamed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from flor_cli.errors import UserError
from flor_cli.services import files, query
from flor_cli.storage import atomic
from flor_cli.storage.git import Git
from flor_cli.storage.media import safe_file_name
from flor_cli.storage.objects import stores


@dataclass
class Exported:
    """One logged value exported: the file written, or what is missing."""

    written: Path | None
    missing: str | None = None  # "<run> <name>": neither store has the bytes (not pulled?)


def export(git: Git, names: Sequence[str], out: Path, where: str | None = None
           ) -> Iterator[Exported]:
    """Check the arguments (a :class:`UserError` before anything is written), then
    write the files out as the iterator is read: one logged value at a time, whatever
    the number logged."""
    names = query.split_names(names)
    logged_names = set(files.media_names(git))
    unknown = [n for n in names if n not in logged_names]
    if unknown:
        raise UserError(f"no images or files logged under {', '.join(map(repr, unknown))}")
    runs = [row[0] for row in query.runs(git, where)[1]]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o: not a directory: {out}")
    return _written(git, files.logged(git, names, runs), out)


def _written(git: Git, logged: Iterable[files.LoggedFile], out: Path) -> Iterator[Exported]:
    held = stores(git)
    run, taken = None, set()  # the files written for this run (runs come one after another)
    for item in logged:
        if item.run != run:
            run, taken = item.run, set()
        data = files.read(git, item.ref, held)
        if data is None:
            yield Exported(None, f"{item.run} {item.name}")
            continue
        stem, suffix = os.path.splitext(item.ref.file)
        where_in_loop = "".join(f".{loop}-{index}" for loop, index in item.ctx.items())
        stem = stem + where_in_loop + (".replayed" if item.replayed else "")
        target = out / safe_file_name(item.run, "") / safe_file_name(stem, suffix)
        copy = 1
        while target.name in taken:  # the same name logged again in the same iteration
            copy += 1
            target = target.with_name(safe_file_name(f"{stem}.{copy}", suffix))
        taken.add(target.name)
        atomic.write_whole(target, data)
        yield Exported(target)
