"""Checkpoint availability lives in the cache: reads never look at the object store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import flor_json, git, make_repo
from synthetic import record_run

from flor_cli.services import query, sync
from flor_cli.storage import cache, objects
from flor_cli.storage.git import Git
from flor_cli.storage.objects import ObjectStore, store_for


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", files={"train.py": "print(1)\n"})


def _put(store: ObjectStore, text: str) -> str:
    return store.put(text.encode())


def test_log_reads_availability_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    repo = _repo(tmp_path)
    g = Git(repo)
    local = store_for(g.flor_dir)
    here = record_run(repo, ckpt_shas=[_put(local, "a"), _put(local, "b")])
    gone = record_run(repo, ckpt_shas=[_put(local, "c"), "f" * 64])
    plain = record_run(repo)
    query.runs(g)  # the cache is built here, and the stores checked once

    def no_stat(*_a, **_k):
        raise AssertionError("a read looked at the object store")

    monkeypatch.setattr(ObjectStore, "has", no_stat)
    monkeypatch.setattr(ObjectStore, "present", no_stat)
    columns, rows = query.runs(g)
    shown = {row[0]: row[columns.index("checkpoints")] for row in rows}
    assert shown == {here: "here", gone: "missing", plain: None}
    _, rows = query.runs(g, where="checkpoints = 'here'", limit=5)
    assert [row[0] for row in rows] == [here]
    assert sync.replayable(g, [here, gone, plain]) == {here: True, gone: False, plain: True}


def test_collected_and_arrived_objects_update_availability(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    g = Git(repo)
    local = store_for(g.flor_dir)
    sha = _put(local, "a")
    run = record_run(repo, ckpt_shas=[sha])
    assert sync.replayable(g, [run]) == {run: True}
    os.unlink(local.path(sha))  # what `flor gc` does, then tells the cache
    db = cache.connect(g)
    try:
        cache.refresh_availability(g, db)
    finally:
        db.close()
    assert sync.replayable(g, [run]) == {run: False}
    assert _put(local, "a") == sha
    db = cache.connect(g)
    try:
        cache.refresh_availability(g, db, "missing")
    finally:
        db.close()
    assert sync.replayable(g, [run]) == {run: True}


@pytest.mark.parametrize("count", [3, 700])  # one stat each, or one listing per directory
def test_present_finds_exactly_what_is_stored(tmp_path: Path, count: int) -> None:
    store = ObjectStore(tmp_path / "objects")
    stored = {_put(store, f"object {i}") for i in range(count)}
    absent = {f"{i:064x}" for i in range(count)}
    assert store.present(stored | absent | {"../../etc"}) == stored
