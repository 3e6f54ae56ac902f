"""flor push / flor pull: runs travel through a bare remote between two clones, nothing lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import cli, flor, flor_json, git

from flor_cli.services import sync
from flor_cli.storage.git import Git

RUN = ("run", "train.py", "--kwargs", "epochs=2", "batches=2")


def clone_pair(repo: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A (the `repo` fixture) pushed to a bare remote, and B cloned from it."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "-u", "origin", "main")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(remote), str(b))
    git(b, "config", "user.email", "other@example.com")
    git(b, "config", "user.name", "Other")
    return repo, b, remote


def record(repo: Path, *args: str) -> str:
    """Record one tiny run; its run id."""
    before = {r["run"] for r in flor_json(repo, "log")}
    flor(repo, *RUN, *args)
    (run,) = {r["run"] for r in flor_json(repo, "log")} - before
    return run


def notes(repo: Path) -> dict[str, str]:
    """Every note in refs/notes/flor: annotated commit -> text, read by git itself."""
    out = git(repo, "notes", "--ref=flor", "list")
    return {annotated: git(repo, "cat-file", "-p", blob)
            for blob, annotated in (line.split() for line in out.splitlines())}


def records(repo: Path, run: str) -> list[str]:
    """A run's records as canonical JSON strings, as `flor show` reads them."""
    shown = json.loads(cli(repo, "show", run, "--format", "json").stdout)
    return sorted(json.dumps(r, sort_keys=True) for r in shown["records"])


def ref(repo: Path, name: str) -> str:
    return git(repo, "rev-parse", "--verify", name).strip()


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", old, new],
                          cwd=repo).returncode == 0


def all_refs(*repos: Path) -> list[str]:
    return [git(r, "for-each-ref", "--format=%(refname) %(objectname)") for r in repos]


def test_push_then_pull_shares_runs_and_checkpoints(repo: Path, tmp_path: Path) -> None:
    a, b, _ = clone_pair(repo, tmp_path)
    run = record(a)
    store = tmp_path / "shared-store"
    git(a, "config", "flor.store", f"file://{store}")  # configured after the run: objects are local

    out = cli(a, "push").stdout
    assert "pushed refs/heads/flor.shadow, refs/notes/flor to origin" in out
    ckpts = [r for r in json.loads(cli(a, "show", run, "--format", "json").stdout)["records"]
             if r["t"] == "ckpt"]
    shas = {o["sha"] for c in ckpts for o in c["objs"].values()}
    assert ckpts and all((store / s[:2] / s[2:]).is_file() for s in shas)
    assert f"copied {len(shas)} checkpoint objects" in out
    assert "copied 0 checkpoint objects" in cli(a, "push").stdout  # idempotent

    assert "1 run added or updated from origin" in cli(b, "pull").stdout
    assert [r["run"] for r in flor_json(b, "log")] == [run]
    assert records(b, run) == records(a, run)
    assert ref(b, "refs/heads/flor.shadow") == ref(a, "refs/heads/flor.shadow")
    # B has the run but not its checkpoints until it points at the shared store.
    assert sync.replayable(Git(b), [run]) == {run: False}
    assert [r["checkpoints"] for r in flor_json(b, "log")] == ["missing"]
    here = ["log", "--where", "checkpoints = 'here' AND lr > 0", "--sort", "checkpoints"]
    assert flor_json(b, *here) == []
    git(b, "config", "flor.store", str(store))
    assert sync.replayable(Git(b), [run]) == {run: True}
    assert [r["checkpoints"] for r in flor_json(b, "log")] == ["here"]
    assert [r["run"] for r in flor_json(b, *here)] == [run]
    assert sync.replayable(Git(a), [run, "no-such-run"]) == {run: True, "no-such-run": True}


def test_divergent_runs_and_notes_merge_without_loss(repo: Path, tmp_path: Path) -> None:
    a, b, remote = clone_pair(repo, tmp_path)
    run_a = record(a)
    run_b = record(b, "lr=0.1")  # recorded without pulling A's run first
    before = {run_a: records(a, run_a), run_b: records(b, run_b)}
    shadow_a, shadow_b = ref(a, "flor.shadow"), ref(b, "flor.shadow")
    notes_b = ref(b, "refs/notes/flor")

    cli(a, "push")
    cli(b, "push")  # rejected as non-fast-forward at first: pulls, merges, pushes again
    cli(a, "pull")
    for name in ("flor.shadow", "refs/notes/flor"):  # B's push merged, A fast-forwarded
        assert git(remote, "rev-list", "--merges", name).strip()
        assert ref(a, name) == ref(b, name) == ref(remote, name)

    # A replay-like append to the same note on both sides: the merge must union them.
    extra = {a: '{"t":"log","rp":"rA","s":0,"n":"x","v":1,"c":{}}',
             b: '{"t":"log","rp":"rB","s":0,"n":"x","v":2,"c":{}}'}
    target = next(c for c, text in notes(a).items() if run_b in text)
    for clone, line in extra.items():
        Git(clone).append_notes({target: line}, "test: append")
    cli(a, "push")
    cli(b, "push")
    cli(a, "pull")

    note_sets = [notes(a), notes(b)]
    assert note_sets[0] == note_sets[1] == notes(remote)
    for text in note_sets[0].values():
        lines = text.splitlines()
        assert all(json.loads(line) for line in lines)      # valid JSONL
        assert len(lines) == len(set(lines))                # nothing duplicated
    assert all(line in note_sets[0][target] for line in extra.values())
    for clone in (a, b):
        assert sorted(r["run"] for r in flor_json(clone, "log")) == sorted([run_a, run_b])
        assert records(clone, run_a) == before[run_a]
        merged = records(clone, run_b)
        assert set(before[run_b]) <= set(merged)
        assert len(merged) == len(before[run_b]) + 2        # the two appended lines
        # Both runs' code is on each flor.shadow; neither history was overwritten.
        tip = ref(clone, "flor.shadow")
        assert is_ancestor(clone, shadow_a, tip) and is_ancestor(clone, shadow_b, tip)
    assert is_ancestor(b, notes_b, ref(b, "refs/notes/flor"))


@pytest.mark.parametrize("setup, args, message", [
    ("runs", ("push", "nowhere"), "no such remote: nowhere"),
    ("runs", ("pull", "nowhere"), "no such remote: nowhere"),
    ("none", ("pull",), "remote origin has no flor runs"),
    ("none", ("push",), "nothing to push"),
])
def test_bad_input_is_one_line_and_changes_nothing(repo: Path, tmp_path: Path, setup: str,
                                                   args: tuple[str, ...], message: str) -> None:
    a, b, remote = clone_pair(repo, tmp_path)
    if setup == "runs":  # flor refs present, so "unchanged" means something
        Git(a).append_to_branch("refs/heads/flor.shadow", Git(a).snapshot_tree(), "x")
    snapshot = all_refs(a, remote)
    proc = cli(a, *args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert all_refs(a, remote) == snapshot
