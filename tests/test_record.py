"""Recording: the user's repository is untouched, and what was logged comes back exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FLOR, cli, fixture_script, flor, flor_json, git, make_repo

SMALL = ["--kwargs", "epochs=2", "batches=3"]


def repo_state(repo: Path) -> dict:
    """Everything of the user's that flor must leave byte-identical."""
    index = repo / ".git" / "index"
    return {
        "status": git(repo, "status", "--porcelain=v2", "--ignored", "--untracked-files=all"),
        "index": index.read_bytes() if index.exists() else None,
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "head_commit": git(repo, "rev-parse", "-q", "--verify", "HEAD", check=False),
        "branches": git(repo, "for-each-ref", "refs/heads", "--format=%(refname) %(objectname)")
        .replace(_shadow_line(repo), ""),
        "files": {p.relative_to(repo).as_posix(): p.read_bytes()
                  for p in sorted(repo.rglob("*")) if p.is_file() and ".git" not in p.parts},
    }


def _shadow_line(repo: Path) -> str:
    tip = git(repo, "rev-parse", "-q", "--verify", "refs/heads/flor.shadow", check=False).strip()
    return f"refs/heads/flor.shadow {tip}\n" if tip else ""


def dirty(repo: Path) -> None:
    """Staged, unstaged, untracked and ignored changes, all at once."""
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# unstaged edit\n")
    (repo / "untracked.py").write_text("UNTRACKED = 1\n")
    (repo / "data").mkdir()
    (repo / "data" / "ignored.bin").write_bytes(b"\x00ignored")


def shadow_files(repo: Path, run: str) -> set[str]:
    commit = flor_json(repo, "query", f"SELECT commit_id FROM runs WHERE run='{run}'")[0]["commit_id"]
    return set(git(repo, "ls-tree", "-r", "--name-only", commit).split())


def test_run_leaves_worktree_index_head_and_branch_identical(repo: Path) -> None:
    dirty(repo)
    before = repo_state(repo)
    flor(repo, "run", "train.py", *SMALL)
    assert repo_state(repo) == before
    [run] = flor_json(repo, "log")
    files = shadow_files(repo, run["run"])
    # the snapshot is the tree that ran: staged, unstaged and untracked, not ignored
    assert {"train.py", "staged.txt", "untracked.py"} <= files
    assert "data/ignored.bin" not in files
    commit = flor_json(repo, "query", "SELECT commit_id FROM runs")[0]["commit_id"]
    assert git(repo, "show", f"{commit}:train.py").endswith("# unstaged edit\n")


def test_detached_head(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    before = repo_state(repo)
    flor(repo, "run", "train.py", *SMALL)
    assert repo_state(repo) == before
    [run] = flor_json(repo, "log")
    assert run["branch"] is None and run["status"] == "ok"


def test_repo_without_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "empty", commit=False, files={"train.py": fixture_script("train.py")})
    before = repo_state(repo)
    flor(repo, "run", "train.py", *SMALL)
    assert repo_state(repo) == before
    [run] = flor_json(repo, "log")
    assert run["status"] == "ok" and run["accuracy"] is not None


def test_values_come_back_loop_index_by_loop_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"loops.py": fixture_script("loops.py")})
    flor(repo, "run", "loops.py", "--kwargs", "n=3", "name=abc", "flag=true")
    rows = flor_json(repo, "log", "--pivot", "v")
    expected = [(e, j, e * 100 + j + (j * j) / 10) for e in range(3) for j in range(3)]
    assert [(r["epoch"], r["step"], r["v"]) for r in rows] == expected
    assert all(r["n"] == 3 and r["name"] == "abc" and r["flag"] == 1 for r in rows)
    items = flor_json(repo, "log", "--pivot", "item")
    assert [(r["epoch"], r["batch"], r["item"]) for r in items] == [
        (e, k, f"{'ab'[k]}{k}") for e in range(3) for k in range(2)]
    [run] = flor_json(repo, "log")
    assert run["final"] == 30 and run["start"] == "abc"
    note = json.loads(cli(repo, "show", "latest", "--format", "json").stdout)
    by_name = {}
    for r in note["records"]:
        if r["t"] == "log":
            by_name.setdefault(r["n"], []).append(r)
    assert [r["v"] for r in by_name["arr"]] == [[0, 0, 0], [0, 1, 2], [0, 2, 4]]
    assert {r["ty"] for r in by_name["arr"]} == {"numpy.ndarray"}
    assert [r["v"] for r in by_name["scalar"]] == [0.0, 0.5, 1.0]
    assert by_name["obj"][0]["v"] == [1, 2] and by_name["obj"][0]["ty"] == "builtins.set"
    assert [r["c"] for r in by_name["scalar"]] == [{"epoch": e} for e in range(3)]
    seqs = [r["s"] for r in note["records"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_failing_script_is_recorded_with_status_and_records(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"loops.py": fixture_script("loops.py")})
    proc = flor(repo, "run", "loops.py", "--kwargs", "exit=3", check=False)
    assert proc.returncode == 3
    [run] = flor_json(repo, "log")
    assert run["status"] == "failed" and run["final"] == 20
    assert json.loads(cli(repo, "show", "latest", "--format", "json").stdout)["header"]["exit"] == 3


def test_script_args_and_output_pass_through(tmp_path: Path) -> None:
    script = "import sys, flor\nprint('args', sys.argv[1:])\nflor.log('k', flor.arg('k', 1))\n"
    repo = make_repo(tmp_path / "r", files={"s.py": script})
    proc = flor(repo, "run", "s.py", "--verbose", "x", "--kwargs", "k=5")
    assert proc.stdout.strip() == "args ['--verbose', 'x']"
    [run] = flor_json(repo, "log")
    assert run["k"] == 5


def test_plain_python_records_a_run_too(repo: Path) -> None:
    before = repo_state(repo)
    subprocess.run([sys.executable, "train.py", "--kwargs", "lr=0.2", "epochs=1", "batches=2"],
                   cwd=repo, check=True, capture_output=True)
    assert repo_state(repo) == before
    [run] = flor_json(repo, "log")
    assert run["lr"] == 0.2 and run["epochs"] == 1 and run["status"] == "ok"
    assert len(flor_json(repo, "log", "--pivot", "loss")) == 2


def test_concurrent_runs_are_both_recorded(repo: Path) -> None:
    procs = [subprocess.Popen([*FLOR, "run", "train.py", "--kwargs", f"lr={lr}", "epochs=2",
                               "batches=3"], cwd=repo, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for lr in (0.01, 0.02, 0.03)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    runs = flor_json(repo, "log")
    assert sorted(r["lr"] for r in runs) == [0.01, 0.02, 0.03]
    for r in runs:
        rows = flor_json(repo, "log", "--pivot", "loss", "--where", f"run = '{r['run']}'")
        assert len(rows) == 6
    assert len(git(repo, "rev-list", "refs/heads/flor.shadow").split()) == 3


def test_sigkill_mid_run_is_recovered_by_next_command(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"slow.py": fixture_script("slow.py")})
    proc = subprocess.Popen([*FLOR, "run", "slow.py"], cwd=repo, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    last = -1
    deadline = time.time() + 60
    while last < 250 and time.time() < deadline:
        last = int(proc.stdout.readline())
    os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and the script, no chance to fold
    proc.wait()
    time.sleep(0.1)
    assert list((repo / ".git" / "flor" / "journals").glob("*.jsonl"))  # orphaned journal
    [run] = flor_json(repo, "log")
    assert run["status"] == "killed"
    values = [r["i"] for r in flor_json(repo, "log", "--pivot", "i")]
    assert values == list(range(len(values)))  # nothing out of order, no gaps
    # at 10 ms per record, everything logged over a second before the kill is there
    assert len(values) >= last - 100
    assert not list((repo / ".git" / "flor" / "journals").glob("*.jsonl"))


def test_no_torch_script(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"sweep.py": fixture_script("sklearn_sweep.py")})
    for c in ("0.1", "10"):
        flor(repo, "run", "sweep.py", "--kwargs", f"C={c}")
    runs = flor_json(repo, "log", "--sort", "C")
    assert [r["C"] for r in runs] == [0.1, 10.0]
    assert all(0.5 < r["accuracy"] <= 1 for r in runs)
    assert len(flor_json(repo, "log", "--pivot", "score")) == 6
    note = json.loads(cli(repo, "show", "latest", "--format", "json").stdout)
    assert note["header"].get("torch") is None


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lr=0.01 then lr=0.1, two epochs of two batches each: for the tests that only read
    recorded runs (recording a torch run is the costly part of a test)."""
    repo = make_repo(tmp_path_factory.mktemp("two_runs") / "repo",
                     files={"train.py": fixture_script("train.py")})
    for lr in ("0.01", "0.1"):
        flor(repo, "run", "train.py", "--kwargs", f"lr={lr}", "epochs=2", "batches=2")
    return repo


def test_checkpoints_are_written_and_listed_in_the_manifest(two_runs: Path) -> None:
    repo = two_runs
    note = json.loads(cli(repo, "show", "latest", "--format", "json").stdout)
    ckpts = [r for r in note["records"] if r["t"] == "ckpt"]
    assert [c["c"] for c in ckpts] == [{"epoch": 0}, {"epoch": 1}]
    objects = repo / ".git" / "flor" / "objects"
    for c in ckpts:
        assert set(c["objs"]) == {"model", "optimizer", "scheduler", "__rng__", "__frame__"}
        for info in c["objs"].values():
            assert (objects / info["sha"][:2] / info["sha"][2:]).is_file()
    kinds = {r["k"] for r in note["records"] if r["t"] == "time"}
    assert kinds == {"prefix", "outer", "nested", "suffix"}


def test_cache_is_deletable(two_runs: Path) -> None:
    repo = two_runs
    before = [cli(repo, *args).stdout for args in
              (["log"], ["log", "--pivot", "loss", "val_acc"], ["log", "--pivot", "--json"])]
    (repo / ".git" / "flor" / "cache.db").unlink()
    for suffix in ("-wal", "-shm"):
        (repo / ".git" / "flor" / f"cache.db{suffix}").unlink(missing_ok=True)
    stale = repo / ".git" / "flor" / "cache-part-killed.db"  # a rebuild helper's, SIGKILLed
    stale.write_bytes(b"half-built")
    after = [cli(repo, *args).stdout for args in
             (["log"], ["log", "--pivot", "loss", "val_acc"], ["log", "--pivot", "--json"])]
    assert after == before
    assert not stale.exists()


def test_output_formats_agree(two_runs: Path) -> None:
    repo = two_runs
    rows = flor_json(repo, "log", "--pivot", "val_acc")
    assert set(rows[0]) == {"run", "epoch", "lr", "epochs", "batches", "batch_size", "hidden",
                            "width", "val_acc"}
    csv_lines = cli(repo, "log", "--pivot", "val_acc", "--csv").stdout.splitlines()
    assert csv_lines[0].split(",")[0] == "run" and len(csv_lines) == 1 + 2 * 2
    md = cli(repo, "log", "--pivot", "val_acc", "--format", "markdown").stdout
    assert md.splitlines()[1].startswith("|-")
    limited = flor_json(repo, "log", "--pivot", "loss", "--where", "epoch = 1", "--sort",
                        "loss DESC", "--limit", "2")
    assert len(limited) == 2 and limited[0]["loss"] >= limited[1]["loss"]
    assert all(r["epoch"] == 1 for r in limited)


def test_dataframe_and_query_api(two_runs: Path) -> None:
    repo = two_runs
    code = ("import flor; df = flor.dataframe('loss', 'val_acc'); "
            "print(len(df), list(df.columns)[:3]); "
            "print(flor.query('SELECT count(*) AS n FROM logs').n[0])")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0] == "12 ['run', 'epoch', 'step']"  # per run: 2 x 2 steps' loss, 2 val_acc
    assert int(out[1]) == 2 * (2 * 2 + 2 + 1)


def test_flor_commit_ends_a_run_in_a_notebook_session(repo: Path) -> None:
    code = ("import flor\nfor lr in (0.1, 0.2):\n"
            "    for e in flor.loop('epoch', range(2)): flor.log('x', lr * e)\n"
            "    flor.commit()\n")
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
    assert len(flor_json(repo, "log")) == 2
    assert [r["x"] for r in flor_json(repo, "log", "--pivot", "x")] == [0, 0.1, 0, 0.2]


def test_outside_a_repository_plain_python_still_trains(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import flor\nprint(flor.log('a', flor.arg('k', 2) * 2))\n")
    proc = subprocess.run([sys.executable, str(script), "--kwargs", "k=4"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "8"
    assert "not recorded" in proc.stderr


def test_concurrent_readers_during_a_run(repo: Path) -> None:
    """A flor command while a run is alive must not fold the live run's journal; it
    shows the run as running."""
    slow = make_repo(repo.parent / "slow", files={"slow.py": fixture_script("slow.py")})
    proc = subprocess.Popen([*FLOR, "run", "slow.py"], cwd=slow, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        while int(proc.stdout.readline()) < 30:
            pass
        [live] = flor_json(slow, "log")
        assert live["status"] == "running"
        assert list((slow / ".git" / "flor" / "journals").glob("*.jsonl"))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
    [run] = flor_json(slow, "log")
    assert run["status"] == "interrupted"


def test_pivot_accepts_arg_names_beside_logged_names(two_runs: Path) -> None:
    repo = two_runs
    rows = flor_json(repo, "log", "--pivot", "lr", "val_acc")
    assert [(r["lr"], r["epoch"]) for r in rows] == [(0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)]
    assert list(rows[0])[-1] == "val_acc"
    only_args = flor_json(repo, "log", "--pivot", "lr")
    assert [r["lr"] for r in only_args] == [0.01, 0.1]
