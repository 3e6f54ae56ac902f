"""Nothing lost: odd values, a dying or blocked journal writer, an interrupted fold,
threads and worker processes, exit statuses, a killed replay (issue 9)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FLOR, cli, flor, flor_json, git, make_repo
from test_journal_stream import KILLS_ITS_WRITER

from flor_cli.storage import journal
from flor_cli.storage.git import Git


def show(repo: Path, run: str = "latest") -> dict:
    return json.loads(cli(repo, "show", run, "--format", "json").stdout)


ODD_VALUES = r'''
import sys
import threading
import numpy as np
import flor

def worker(k):
    flor.log("thread", k)

if __name__ == "__main__":
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in flor.loop("step", range(101)):
        flor.log("loss", np.float64(i) / 4)
    flor.log("word", np.str_("abc"))
    flor.log("count", np.int64(7))
    flor.log("flag", np.bool_(True))
    flor.log("seed", 2**63)
    flor.log("huge", -(2**70))
    flor.log("lone", "a\udc80b")
    flor.log("name", flor.arg("name", "x"))
    for j in flor.loop("forever", range(10**26)):
        if j == 2:
            break
    sys.exit(3)
'''


def test_odd_values_threads_and_exit_status_of_a_plain_python_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"odd.py": ODD_VALUES})
    proc = subprocess.run([sys.executable, "odd.py", "--kwargs", b"name=caf\xe9".decode(
        "utf-8", "surrogateescape")], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    runs = flor_json(repo, "log")
    assert len(runs) == 1  # four threads made their first flor call at once: one run
    assert runs[0]["status"] == "failed"
    note = show(repo)
    assert note["header"]["exit"] == 3
    logs = {}
    for r in note["records"]:
        if r["t"] == "log":
            logs.setdefault(r["n"], []).append(r)
    assert [r["v"] for r in logs["loss"]] == [i / 4 for i in range(101)]
    assert {r["ty"] for r in logs["loss"]} == {"numpy.float64"}
    assert (logs["word"][0]["v"], logs["count"][0]["v"], logs["flag"][0]["v"]) == ("abc", 7, True)
    assert logs["seed"][0]["v"] == 2**63 and logs["huge"][0]["v"] == -(2**70)
    assert sorted(r["v"] for r in logs["thread"]) == [0, 1, 2, 3]
    assert logs["lone"][0]["v"] == "a\\udc80b"  # shown with its escape spelled out
    assert logs["name"][0]["v"] == "caf\\udce9"
    # the cache takes them: ints beyond 64 bits as their exact decimal text
    seeds = flor_json(repo, "query", "SELECT name, value FROM logs WHERE name IN "
                                     "('seed', 'huge') ORDER BY name")
    assert seeds == [{"name": "huge", "value": str(-(2**70))},
                     {"name": "seed", "value": str(2**63)}]
    assert flor_json(repo, "log", "--pivot", "seed")[0]["seed"] == str(2**63)


SPAWNS = r'''
import multiprocessing as mp
import flor

def work(k):
    flor.log("in_worker", k)
    return k * 2

if __name__ == "__main__":
    flor.log("before", 1)
    with mp.get_context("spawn").Pool(2) as pool:
        print(sum(pool.map(work, range(4))))
'''


def test_spawned_workers_do_not_start_runs_of_their_own(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"spawns.py": SPAWNS})
    flor(repo, "run", "spawns.py")
    subprocess.run([sys.executable, "spawns.py"], cwd=repo, check=True, capture_output=True)
    assert [r["status"] for r in flor_json(repo, "log")] == ["ok", "ok"]


def test_records_in_flight_to_a_killed_writer_are_written_by_the_fallback(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"kill.py": KILLS_ITS_WRITER})
    flor(repo, "run", "kill.py")
    names = [r["n"] for r in show(repo)["records"] if r["t"] == "log"]
    assert names.count("x") == 12
    assert {"in_flight", "after", "final"} <= set(names)
    assert show(repo)["header"]["status"] == "ok"


def _session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Session writing from its own thread (no writer process) into a fresh journal."""
    from flor_cli.runtime import session as session_module
    from flor_cli.storage.objects import ObjectStore

    monkeypatch.setattr(session_module, "_start_writer", session_module.InProcessWriter)
    path = tmp_path / "journals" / "run.jsonl"
    journal.create(tmp_path, {"t": "run", "run": "run", "tree": "0" * 40})
    return session_module.Session(path, ObjectStore(tmp_path / "objects"), {}, time.time())


def test_a_full_disk_loses_records_but_never_hangs_or_says_ok(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    session = _session(tmp_path, monkeypatch)
    real_write = journal.JournalWriter.write
    full = True

    def write(self, lines):
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, lines)

    monkeypatch.setattr(journal.JournalWriter, "write", write)
    session.log("a", 1)
    session.log("b", 2)
    flushing = threading.Thread(target=session.flush, daemon=True)
    flushing.start()
    flushing.join(10)
    assert not flushing.is_alive()  # it used to wait on its own process's lock forever
    full = False  # space again: the end of the run and the loss reach the journal
    session.close({"end": 1.0})
    assert session.lost == 2
    assert "2 record(s) of this run could not be written" in capsys.readouterr().err
    header = journal.read_header(session.journal_path)
    records = b"".join(journal.record_chunks(session.journal_path)).decode()
    assert header["lost"] == 2
    repo = make_repo(tmp_path / "repo", files={"f.txt": "x\n"})
    g = Git(repo)
    moved = g.flor_dir / "journals" / "run.jsonl"
    moved.parent.mkdir(parents=True)
    session.journal_path.rename(moved)
    header["tree"] = g.snapshot_tree()
    moved.write_text(json.dumps(header) + "\n" + records)
    journal.fold(g, moved, status={"status": "ok", "exit": 0})
    assert flor_json(repo, "log")[0]["status"] == "incomplete"


# -- the fold --------------------------------------------------------------------------

RECORDS = [{"t": "log", "s": i, "n": "x", "v": i, "c": {}} for i in range(5)]


def _journal(git_: Git) -> Path:
    with contextlib.chdir(git_.root):  # where a run starts: its cwd is recorded from there
        path = journal.begin(git_, "f.txt", [], {})
    writer = journal.JournalWriter(path)
    writer.write(json.dumps(r) for r in RECORDS)
    writer.close()
    return path


class Cut(BaseException):
    """Where the fold is cut short, as by SIGKILL: nothing after it runs."""


STEPS = ["append_to_branch", "commit line", "append_notes", "unlink"]


@pytest.mark.parametrize("step", STEPS)
def test_a_fold_cut_short_at_any_step_loses_and_doubles_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    repo = make_repo(tmp_path / "repo", files={"f.txt": "x\n"})
    g = Git(repo)
    path = _journal(g)

    def after(real):
        def cut(*args, **kwargs):
            result = real(*args, **kwargs)
            raise Cut(step)
        return cut

    with monkeypatch.context() as m:
        if step in ("append_to_branch", "append_notes"):
            m.setattr(g, step, after(getattr(g, step)))
        elif step == "unlink":
            m.setattr(journal.os, "unlink", after(os.unlink))
        else:
            real_write = os.write

            def write(fd: int, data: bytes) -> int:
                written = real_write(fd, data)
                if b'"commit"' in data:
                    raise Cut(step)
                return written

            m.setattr(journal.os, "write", write)
        with pytest.raises(Cut):
            journal.fold(g, path, status={"status": "ok", "exit": 0})
    assert journal.fold_orphans(g) or step == "unlink"  # the next command finishes it
    assert not path.exists()
    [run] = flor_json(repo, "log")
    assert run["status"] == "ok"  # not turned into `killed` by a second fold
    values = [r["v"] for r in show(repo)["records"] if r["t"] == "log"]
    assert values == [0, 1, 2, 3, 4]
    # a fold cut between making the shadow commit and journaling its id (SIGKILL only:
    # Ctrl-C waits) leaves that commit without a note, which is no run: harmless
    shadow = git(repo, "rev-list", "refs/heads/flor.shadow").split()
    assert len(shadow) == (2 if step == "append_to_branch" else 1)


def test_ctrl_c_waits_for_the_fold_to_finish() -> None:
    # in a process of its own: only a main thread takes signals, and pytest-xdist's
    # workers may run tests on another thread
    code = """
import os, signal, time
from flor_cli.storage import journal
done = []
try:
    with journal.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append(True)
except KeyboardInterrupt:
    print("interrupted after", done)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out == "interrupted after [True]\n"


# -- replay ----------------------------------------------------------------------------

SLOW_EPOCHS = '''
import os
import time
import flor

state = {"w": 0}
with flor.checkpointing(state=state):
    for e in flor.loop("epoch", range(3)):
        for s in flor.loop("step", range(2)):
            state["w"] += 1
            if os.environ.get("PIDS"):
                with open(os.environ["PIDS"], "a") as f:
                    f.write(f"{os.getpid()}\\n")
                time.sleep(0.5)
flor.log("w", state["w"])
'''


def test_kill_9_of_replay_ends_its_worker_and_the_next_replay_prunes_its_worktree(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"train.py": SLOW_EPOCHS})
    flor(repo, "run", "train.py")
    (repo / "train.py").write_text(SLOW_EPOCHS.replace('state["w"] += 1',
                                                       'state["w"] += 1\n'
                                                       '            flor.log("s", s)'))
    pids = tmp_path / "pids"
    proc = subprocess.Popen([*FLOR, "replay", "s", "--yes"], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PIDS": str(pids)})
    deadline = time.time() + 60
    while not (pids.exists() and pids.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    worker = int(pids.read_text().split()[0])
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while Path(f"/proc/{worker}").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists() or \
        Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    assert "flor/worktrees" in git(repo, "worktree", "list")
    from flor_cli.services.sandbox import prune_stale_worktrees

    assert prune_stale_worktrees(Git(repo))
    assert "flor/worktrees" not in git(repo, "worktree", "list")
    assert not [p for p in (repo / ".git" / "flor" / "worktrees").iterdir()]


@pytest.mark.parametrize("store", [None, "dir", "local://"])
def test_a_checkpoint_object_deleted_by_hand_is_noticed_and_the_run_re_executed(
        tmp_path: Path, store: str | None) -> None:
    """The cache said the run's checkpoints were `here`. With a remote store (fsspec
    URL) the plan believes it, and every replay of the run failed at restore
    (FileNotFoundError); a local or directory store said nothing on stderr and left the
    cache wrong. Now the replay says so, re-executes and refreshes the availability."""
    repo = make_repo(tmp_path / "repo", files={"train.py": SLOW_EPOCHS})
    shared = tmp_path / "store"
    if store is not None:
        git(repo, "config", "flor.store", (store if store != "dir" else "") + str(shared))
    flor(repo, "run", "train.py")
    assert flor_json(repo, "log")[0]["checkpoints"] == "here"
    state = next(r for r in show(repo)["records"] if r["t"] == "ckpt")["objs"]["state"]["sha"]
    for root in (repo / ".git" / "flor" / "objects", shared):  # epoch 0's state, wherever
        (root / state[:2] / state[2:]).unlink(missing_ok=True)
    (repo / "train.py").write_text(SLOW_EPOCHS.replace(
        'for s in flor.loop', 'flor.log("before", state["w"])\n        for s in flor.loop'))
    replay = flor(repo, "replay", "before", "--yes")
    [run] = flor_json(repo, "log")
    missing = [line for line in replay.stderr.splitlines() if state[:12] in line]
    assert len(missing) == 1 and run["run"] in missing[0], replay.stderr
    assert run["checkpoints"] == "missing"
    assert [r["before"] for r in flor_json(repo, "log", "--pivot", "before")] == [0, 2, 4]


# -- the cache -------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path: Path, damage: str) -> None:
    repo = make_repo(tmp_path / "repo", files={"f.txt": "x\n"})
    g = Git(repo)
    journal.fold(g, _journal(g), status={"status": "ok", "exit": 0})
    cli(repo, "log")
    db = g.flor_dir / "cache.db"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    size = db.stat().st_size
    if damage == "random bytes":
        db.write_bytes(os.urandom(size))
    else:
        with open(db, "r+b") as f:
            f.truncate(size // 3)
    done = cli(repo, "query", "SELECT value FROM logs ORDER BY seq", "--format", "json")
    assert [row["value"] for row in json.loads(done.stdout)] == [0, 1, 2, 3, 4]
    if damage == "random bytes":
        assert "query cache" in done.stderr and "rebuilding" in done.stderr


def test_a_binary_file_given_to_transplant_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "new.py").write_text('import flor\nflor.log("x", 1)\n')
    (tmp_path / "old.py").write_bytes(b"\x89PNG\r\n\x1a\n\xbd\x00\xff")
    done = cli(tmp_path, "transplant", "x", "--from", "new.py", "--into", "old.py",
               check=False)
    assert (done.returncode, done.stderr) == (
        2, "flor: old.py: not a Python script (not UTF-8 text)\n")


def test_the_snapshot_holds_what_ran_even_for_assume_unchanged_and_skip_worktree(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"a.py": "A = 1\n", "b.py": "B = 1\n",
                                               "c.py": "C = 1\n"})
    git(repo, "update-index", "--assume-unchanged", "a.py")
    git(repo, "update-index", "--skip-worktree", "b.py")
    git(repo, "update-index", "--assume-unchanged", "--", "c.py")
    git(repo, "update-index", "--skip-worktree", "c.py")
    for name in ("a", "b", "c"):
        (repo / f"{name}.py").write_text(f"{name.upper()} = 2  # what ran\n")
    index = (repo / ".git" / "index").read_bytes()
    tree = Git(repo).snapshot_tree()
    for name in ("a", "b", "c"):
        assert git(repo, "show", f"{tree}:{name}.py") == f"{name.upper()} = 2  # what ran\n"
    assert (repo / ".git" / "index").read_bytes() == index  # the user's flags stay


def test_a_full_disk_during_the_fold_says_so(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from flor_cli.storage import git as git_module

    repo = make_repo(tmp_path / "repo", files={"f.txt": "x\n"})
    g = Git(repo)
    path = _journal(g)
    real = git_module.run_git

    def full(args, cwd, **kwargs):
        if list(args)[0] == "update-ref":
            return subprocess.CompletedProcess(
                ["git", *args], 128, "", "fatal: update_ref failed for ref "
                "'refs/heads/flor.shadow': unable to append to '.git/logs/refs/heads/"
                "flor.shadow': No space left on device\n")
        return real(args, cwd, **kwargs)

    monkeypatch.setattr(git_module, "run_git", full)
    with pytest.raises(Exception) as failed:
        journal.fold(g, path, status={"status": "ok", "exit": 0})
    assert "No space left on device" in str(failed.value)
    assert "concurrent writers" not in str(failed.value)
    assert path.exists()  # nothing lost: the next command folds it


@pytest.mark.parametrize("trouble", ["read-only", "disk full", "unreadable file"])
def test_the_machine_s_troubles_are_one_clear_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trouble: str) -> None:
    """As root (CI) chmod does not stop flor, so each trouble is raised where it hits."""
    from flor_cli.storage import git as git_module

    repo = make_repo(tmp_path / "repo", files={"t.py": "print(1)\n"})
    journals = repo / ".git" / "flor" / "journals"
    if trouble == "read-only":
        def begin(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(journals))
        monkeypatch.setattr(journal, "begin", begin)
        expected = f"flor: {journals}: Read-only file system\n"
    elif trouble == "disk full":
        def begin(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(journals / "r.jsonl"))
        monkeypatch.setattr(journal, "begin", begin)
        expected = f"flor: {journals / 'r.jsonl'}: No space left on device\n"
    else:  # what git add says of a chmod 000 file in the tree
        real = git_module.run_git

        def run_git(args, cwd, **kwargs):
            if list(args)[:1] == ["add"]:
                raise git_module.GitError(["git", *args], 128,
                                          'error: open("secret.txt"): Permission denied\n'
                                          "error: unable to index file 'secret.txt'\n"
                                          "fatal: adding files failed\n")
            return real(args, cwd, **kwargs)
        monkeypatch.setattr(git_module, "run_git", run_git)
        expected = 'flor: git add: error: open("secret.txt"): Permission denied\n'
    done = cli(repo, "run", "t.py", check=False)  # fails before the script would start
    assert (done.returncode, done.stderr) == (2, expected)


def test_a_short_write_to_the_journal_loses_no_line(tmp_path: Path, monkeypatch) -> None:
    """os.write may write less than it was given (a nearly full disk, a signal): the
    journal writer must write the rest, not report the batch written with its tail
    missing (the writer process acknowledges what write() returned from)."""
    path = tmp_path / "journal.jsonl"
    writer = journal.JournalWriter(path)
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        return real_write(fd, data[:max(1, len(data) // 3)])  # a third at a time

    monkeypatch.setattr(journal.os, "write", short_write)
    lines = [json.dumps({"t": "log", "s": i, "n": "x", "v": i}) for i in range(50)]
    writer.write(lines)
    writer.close()
    assert path.read_text().splitlines() == lines
