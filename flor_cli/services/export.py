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
from typing import Sequence

from flor_cli.errors import UserError
from flor_cli.services import files, query
from flor_cli.storage.git import Git
from flor_cli.storage.media import safe_file_name


@dataclass
class Exported:
    written: list[Path]
    missing: list[str]  # "<run> <name>": neither store has the bytes (not pulled yet?)


def export(git: Git, names: Sequence[str], out: Path, where: str | None = None) -> Exported:
    names = [n for name in names for n in name.split(",") if n]
    logged_names = set(files.media_names(git))
    unknown = [n for n in names if n not in logged_names]
    if unknown:
        raise UserError(f"no images or files logged under {', '.join(map(repr, unknown))}")
    runs = [row[0] for row in query.runs(git, where)[1]]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o: not a directory: {out}")
    result = Exported([], [])
    taken: set[Path] = set()
    for item in files.logged(git, names, runs):
        data = files.read(git, item.ref)
        if data is None:
            result.missing.append(f"{item.run} {item.name}")
            continue
        stem, suffix = os.path.splitext(item.ref.file)
        where_in_loop = "".join(f".{loop}-{index}" for loop, index in item.ctx.items())
        stem = stem + where_in_loop + (".replayed" if item.replayed else "")
        target = out / safe_file_name(item.run, "") / safe_file_name(stem, suffix)
        copy = 1
        while target in taken:  # the same name logged again in the same iteration
            copy += 1
            target = target.with_name(safe_file_name(f"{stem}.{copy}", suffix))
        taken.add(target)
        files.write_whole(target, data)
        result.written.append(target)
    return result
