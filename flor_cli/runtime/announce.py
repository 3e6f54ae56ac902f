"""What a finished run says on stderr: which run it recorded, and that it is saving.

Folding a journal of a million records takes a few seconds after the script's last
line; a line before it says why the process has not exited yet. Shared by ``flor run``
(the supervisor) and a plain ``python train.py`` (the run folds itself at exit).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flor_cli.sizes import size_text

if TYPE_CHECKING:
    from flor_cli.storage.git import Git

# A journal this big takes long enough to fold (~0.5 s per 10 MB) to say so first.
SAY_SAVING_BYTES = 8 * 1024 * 1024


def fold_and_report(git: Git, path: Path, status: dict | None = None) -> str | None:
    """Fold the run's journal into its note, saying which run was recorded."""
    from flor_cli.storage.journal import fold

    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if size >= SAY_SAVING_BYTES:
        _say(f"flor: saving run {path.stem} ({size_text(size)} of records)...")
    summary: dict = {}
    commit = fold(git, path, status=status, summary=summary)
    if commit and summary:
        run, records = summary["run"], summary["records"]
        _say(f"flor: recorded run {run} ({records} record{'s' if records != 1 else ''})"
             f" \u2014 flor show {run}")
    return commit


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed by the script: the run is still kept
        pass
