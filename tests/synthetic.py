"""Tiny synthetic runs made with flor's own storage functions, for tests about scale.

A real ``flor run`` costs a second of interpreter and torch start-up; these tests need
many runs (or one big one) and care about storage, not training. Each run goes the way
a real one does from its journal on: a journal header with a snapshot tree, records
appended by a :class:`journal.JournalWriter`, then :func:`journal.fold` into a shadow
commit and its note.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flor_cli.storage import journal
from flor_cli.storage.git import Git


def record_run(repo: Path, epochs: int = 2, steps: int = 2, lr: float = 0.1,
               ckpt_shas: list[str] | None = None, files: int = 0) -> str:
    """Fold one synthetic run into ``repo``; returns its run id.

    ``ckpt_shas`` lists the checkpoint objects its epochs recorded (one per epoch, in
    turn); without it the run took no checkpoints. ``files``: how many files it logged
    (``flor.File`` under the name ``sample``, one per step from the first, each the same
    few bytes in the local object store).
    """
    run, path = write_journal(repo, epochs, steps, lr, ckpt_shas, files)
    journal.fold(Git(repo), path, {"status": "ok", "exit": 0, "end": time.time()})
    return run


def write_journal(repo: Path, epochs: int = 2, steps: int = 2, lr: float = 0.1,
                  ckpt_shas: list[str] | None = None, files: int = 0) -> tuple[str, Path]:
    """The journal of a synthetic run that ended, not folded yet: (run id, its path)."""
    git = Git(repo)
    started = time.time()
    run = journal.new_id(started)
    header = {"t": "run", "run": run, "tree": git.snapshot_tree(), "script": "train.py",
              "cwd": ".", "argv": [], "kwargs": {"lr": str(lr)}, "branch": "main",
              "head": None, "start": started, "python": "3.11", "host": "test",
              "user": "test"}
    path = journal.create(git.flor_dir, header)
    writer = journal.JournalWriter(path)
    sample = None
    if files:
        from flor_cli.storage.media import FILE_TYPE, MediaRef
        from flor_cli.storage.objects import stores

        data = b"a logged file\n"
        sample = (MediaRef(stores(git)[0].put(data), "sample.txt", "text/plain", len(data))
                  .to_json(), FILE_TYPE, files)
    writer.write(json.dumps(r, separators=(",", ":")) for r in _records(epochs, steps, lr,
                                                                       ckpt_shas, sample))
    writer.close()
    return run, path


def _records(epochs: int, steps: int, lr: float, ckpt_shas: list[str] | None,
             sample: tuple[dict, str, int] | None = None) -> list[dict]:
    records: list[dict] = [{"t": "arg", "n": "lr", "v": lr}]
    for epoch in range(epochs):
        for step in range(steps):
            records.append({"t": "log", "n": "step_loss", "v": 1.0 / (1 + epoch * steps + step),
                            "c": {"epoch": epoch, "step": step}})
            if sample is not None and epoch * steps + step < sample[2]:
                records.append({"t": "log", "n": "sample", "v": sample[0], "ty": sample[1],
                                "c": {"epoch": epoch, "step": step}})
        if ckpt_shas:
            sha = ckpt_shas[epoch % len(ckpt_shas)]
            records.append({"t": "ckpt", "b": 0, "c": {"epoch": epoch}, "i": 0, "bytes": 1,
                            "sec": 0.0, "objs": {"model": {"kind": "pickle", "sha": sha}}})
        records.append({"t": "log", "n": "loss", "v": 1.0 / (1 + epoch), "c": {"epoch": epoch}})
    records.append({"t": "log", "n": "accuracy", "v": 0.5, "c": {}})
    for seq, record in enumerate(records, start=1):
        record["s"] = seq
    return records
