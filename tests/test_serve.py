"""Sweeps and the queue: flor sweep / flor.batch queue jobs, flor serve runs them as runs.

Jobs run the code as it was when queued; a killed or interrupted server loses no job and
runs none twice; failed jobs can be retried. A pure-Python script keeps this fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FLOR, cli, flor, flor_json, git, make_repo

import flor as flor_api
from flor_cli.main import main
from flor_cli.services import queue, sweep
from flor_cli.storage.git import Git

SCRIPT = """\
import os, time
import flor

lr = flor.arg("lr", 0.1)
hidden = flor.arg("hidden", 1)
while os.path.exists("data/block") or os.path.exists("data/block-%d" % hidden):  # held
    time.sleep(0.05)
if os.path.exists("data/fail-%d" % hidden):
    raise SystemExit("told to fail")
for epoch in flor.loop("epoch", range(2)):
    flor.log("loss", lr * hidden * (epoch + 1))
flor.log("gpu", os.environ.get("CUDA_VISIBLE_DEVICES", "none"))
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "repo", files={"train.py": SCRIPT, ".gitignore": "data/\n"})
    (path / "data").mkdir()
    return path


def jobs(repo: Path) -> list[dict]:
    return flor_json(repo, "queue")


def ok_runs(repo: Path) -> list[dict]:
    return [r for r in flor_json(repo, "log") if r["status"] == "ok"]


def test_sweep_runs_each_combination_once_on_the_code_as_queued(repo: Path) -> None:
    out = flor(repo, "sweep", "train.py", "--grid", "lr=0.5,0.25", "hidden=2,3").stdout
    assert "queued 4 jobs" in out
    queued = jobs(repo)
    assert [j["state"] for j in queued] == ["pending"] * 4
    assert sorted(j["kwargs"] for j in queued) == sorted(
        f"lr={lr} hidden={h}" for lr in ("0.5", "0.25") for h in ("2", "3"))
    tree = queue.jobs(Git(repo))[0].tree
    (repo / "train.py").write_text(SCRIPT.replace("lr * hidden", "0 * hidden"))  # later edit

    proc = flor(repo, "serve", "--gpus", "0,1")
    assert "4 done, 0 failed" in proc.stdout
    done = jobs(repo)
    assert [j["state"] for j in done] == ["done"] * 4 and all(j["run"] for j in done)
    runs = {r["run"]: r for r in ok_runs(repo)}
    assert set(runs) == {j["run"] for j in done}
    loss = {(r["run"], r["epoch"]): r["loss"] for r in flor_json(repo, "log", "--pivot", "loss")}
    for job in done:
        run = runs[job["run"]]
        lr, hidden = (float(kv.split("=")[1]) for kv in job["kwargs"].split())
        assert (run["lr"], run["hidden"]) == (lr, hidden)
        assert loss[job["run"], 1] == lr * hidden * 2  # the queued code, not the edited one
        assert run["gpu"] in ("0", "1")
        commit = json.loads(flor(repo, "show", job["run"], "--format", "json").stdout)["commit"]
        assert git(repo, "rev-parse", f"{commit}^{{tree}}").strip() == tree
    assert "0 done, 0 failed" in flor(repo, "serve").stdout  # nothing runs twice
    assert len(flor_json(repo, "log")) == 4
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_failed_jobs_are_kept_and_retried(repo: Path) -> None:
    flor(repo, "sweep", "train.py", "--grid", "hidden=1,2")
    (repo / "data" / "fail-2").write_text("")
    proc = flor(repo, "serve", check=False)
    assert proc.returncode == 1 and "1 done, 1 failed" in proc.stdout
    states = {j["kwargs"]: j for j in jobs(repo)}
    assert states["hidden=2"]["state"] == "failed" and "exited 1" in states["hidden=2"]["error"]
    assert "told to fail" in Path(states["hidden=2"]["error"].split("output: ")[1]).read_text()
    (repo / "data" / "fail-2").unlink()  # data the job reads lives outside the snapshot
    assert "1 job pending again" in flor(repo, "queue", "retry").stdout
    assert "1 done, 0 failed" in flor(repo, "serve").stdout
    assert [j["state"] for j in jobs(repo)] == ["done", "done"]
    assert sorted(r["hidden"] for r in ok_runs(repo)) == [1, 2]
    proc = flor(repo, "queue", "retry", "7", check=False)
    assert proc.returncode == 2 and "no such job: 7" in proc.stderr


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def running(repo: Path) -> list[queue.QueuedJob]:
    return [j for j in queue.jobs(Git(repo)) if j.state == "running" and j.run]


def start_serve(repo: Path) -> subprocess.Popen:
    return subprocess.Popen([*FLOR, "serve"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_interrupted_or_killed_server_loses_no_job_and_runs_none_twice(repo: Path) -> None:
    flor(repo, "sweep", "train.py", "--grid", "hidden=1,2,3")
    block = repo / "data" / "block"
    block.write_text("")

    server = start_serve(repo)  # Ctrl-C while job 1 runs
    wait_for(lambda: running(repo), "job 1 to start")
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=60)
    assert server.returncode == 130, err
    assert [j["state"] for j in jobs(repo)] == ["pending"] * 3
    assert [r["status"] for r in flor_json(repo, "log")] == ["interrupted"]

    (repo / "data" / "block-2").write_text("")
    block.unlink()  # job 1 runs through; job 2 is held
    server = start_serve(repo)
    wait_for(lambda: [j.id for j in running(repo)] == [2], "job 2 to start")
    script_pids = _script_pids(repo)
    server.kill()  # SIGKILL: nothing can clean up
    server.wait()
    wait_for(lambda: not any(_alive(p) for p in script_pids), "the job's script to die")
    assert [j.state for j in queue.jobs(Git(repo))] == ["done", "pending", "pending"]

    (repo / "data" / "block-2").unlink()
    assert "2 done, 0 failed" in flor(repo, "serve").stdout
    assert [j["state"] for j in jobs(repo)] == ["done"] * 3
    runs = flor_json(repo, "log")
    assert sorted(r["hidden"] for r in runs if r["status"] == "ok") == [1, 2, 3]
    # the interrupted and the killed attempts are recorded as such, not as results
    assert sorted(r["status"] for r in runs if r["status"] != "ok") == ["interrupted", "killed"]


def test_the_worktree_of_a_killed_server_is_pruned_by_the_next_one(repo: Path) -> None:
    """A SIGKILL'd server cannot remove its job's worktree; the next flor serve (or
    replay) prunes it, as replay's own, by the same rule: no live process holds its lock.
    The pruner looked only in .git/flor/worktrees: serve's stayed, listed by git."""
    flor(repo, "sweep", "train.py", "--grid", "hidden=1")
    (repo / "data" / "block").write_text("")
    serve_dir = repo / ".git" / "flor" / "serve"
    server = start_serve(repo)
    wait_for(lambda: running(repo), "the job to start")
    script_pids = _script_pids(repo)
    homes = [p for p in serve_dir.glob("job-*") if p.is_dir()]
    assert homes and "flor/serve/job-" in git(repo, "worktree", "list")
    server.kill()
    server.wait()
    wait_for(lambda: not any(_alive(p) for p in script_pids), "the job's script to die")
    assert all(h.exists() for h in homes)
    (repo / "data" / "block").unlink()
    assert "1 done, 0 failed" in flor(repo, "serve").stdout
    assert not [p for p in serve_dir.glob("job-*") if p.is_dir()]
    assert "flor/serve" not in git(repo, "worktree", "list")
    assert (serve_dir / "logs").is_dir()  # not a worktree: kept


def _script_pids(repo: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", str(repo / ".git" / "flor" / "serve")],
                         capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    if not pids:  # the script's command line is relative; find it by its cwd
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                if str(repo / ".git") in os.readlink(f"/proc/{pid}/cwd"):
                    pids.append(pid)
            except OSError:
                pass
    assert pids
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_batch_of_cross_prod_queues_from_python(repo: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    combos = flor_api.cross_prod(hidden=[100, 200], lr=(1e-3, 1e-4))
    assert combos == [{"hidden": 100, "lr": 1e-3}, {"hidden": 100, "lr": 1e-4},
                      {"hidden": 200, "lr": 1e-3}, {"hidden": 200, "lr": 1e-4}]
    queued = flor_api.batch(combos, script="train.py")
    assert [j["kwargs"] for j in queued] == [{"hidden": "100", "lr": "0.001"},
                                             {"hidden": "100", "lr": "0.0001"},
                                             {"hidden": "200", "lr": "0.001"},
                                             {"hidden": "200", "lr": "0.0001"}]
    assert [j["state"] for j in queued] == ["pending"] * 4
    assert [j.id for j in queue.jobs(Git(repo))] == [j["id"] for j in queued]


def test_random_sweep_is_reproducible_and_typed() -> None:
    spec = sweep.parse(["--random", "3", "lr=1e-4:1e-2:log", "hidden=16:64", "act=relu,tanh",
                        "--seed", "7", "--kwargs", "epochs=2", "--grid", "wd=0,1"])
    configs = spec.configs()
    assert len(configs) == 6 and configs == sweep.parse(
        ["--random", "3", "lr=1e-4:1e-2:log", "hidden=16:64", "act=relu,tanh", "--seed", "7",
         "--kwargs", "epochs=2", "--grid", "wd=0,1"]).configs()
    for c in configs:
        assert 1e-4 <= float(c["lr"]) <= 1e-2 and 16 <= int(c["hidden"]) <= 64
        assert c["act"] in ("relu", "tanh") and c["epochs"] == "2" and c["wd"] in ("0", "1")


@pytest.mark.parametrize("args, message", [
    (["train.py"], "say what to sweep"),
    (["train.py", "--grid", "lr"], "--grid 'lr': expected name=value"),
    (["train.py", "--random", "x"], "--random x: not an integer"),
    (["train.py", "--random", "2", "lr=3:1"], "LO is above HI"),
    (["train.py", "--random", "2", "lr=0:1:log"], "log bounds must be positive"),
    (["train.py", "--gird", "lr=1"], "no such option: --gird"),
    (["missing.py", "--grid", "lr=1,2"], "no such script: missing.py"),
])
def test_bad_sweeps_are_one_line_and_queue_nothing(repo: Path, monkeypatch, capsys, args,
                                                   message) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(SystemExit) as exited:
        main(["sweep", *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert queue.jobs(Git(repo)) == []


def test_no_ray_runs_locally_whatever_flor_ray_says(repo: Path) -> None:
    from flor_cli.services import ray_engine

    git(repo, "config", "flor.ray", "127.0.0.1:9")  # nothing listens there
    assert ray_engine.address(Git(repo), None) == "127.0.0.1:9"
    assert ray_engine.address(Git(repo), False) is None
    flor(repo, "sweep", "train.py", "--grid", "hidden=1")
    assert "1 done, 0 failed" in flor(repo, "serve", "--no-ray").stdout
    (repo / "train.py").write_text(SCRIPT.replace('flor.log("gpu"', 'flor.log("twice", lr * 2)\n'
                                                  'flor.log("gpu"'))
    proc = flor(repo, "replay", "twice", "--yes", "--no-ray")
    assert [r["twice"] for r in flor_json(repo, "log")] == [0.2], proc.stderr
    for command in ("serve", "replay"):
        proc = cli(repo, command, *(["twice"] if command == "replay" else []),
                   "--ray=127.0.0.1:9", "--no-ray", check=False)
        assert proc.returncode == 2 and "--ray and --no-ray: choose one" in proc.stderr


def test_queued_snapshots_leave_out_big_files_as_flor_run_does(repo: Path) -> None:
    from flor_cli.storage import notes

    git(repo, "config", "flor.maxFileSize", "1k")
    (repo / "big.bin").write_bytes(b"x" * 2048)  # untracked, over the limit
    (repo / "train.py").write_text(SCRIPT + 'flor.log("size", os.path.getsize("big.bin"))\n')
    proc = flor(repo, "sweep", "train.py", "--grid", "hidden=1")
    assert "left out of the snapshot" in proc.stderr and "big.bin (2.0 KiB)" in proc.stderr
    (job,) = queue.jobs(Git(repo))
    assert [e["path"] for e in job.big] == ["big.bin"]
    assert git(repo, "ls-tree", "--name-only", job.tree).split() == [".gitignore", "train.py"]
    flor(repo, "serve")
    (run,) = ok_runs(repo)
    assert run["size"] == 2048  # linked into the job's worktree
    g = Git(repo)
    (note,) = [notes.parse(c, g.blob_text(b)) for c, b in g.iter_notes()]
    (big,) = note.header["big"]
    assert big["path"] == "big.bin" and big["size"] == 2048 and big["hash"].startswith("sha256:")


def test_a_queue_from_before_big_files_gains_the_column(repo: Path) -> None:
    import sqlite3

    g = Git(repo)
    g.flor_dir.mkdir(parents=True, exist_ok=True)
    old = sqlite3.connect(queue.path(g))
    old.execute("\n".join(line for line in queue._SCHEMA.splitlines()
                          if not line.lstrip().startswith("big ")))
    old.execute("INSERT INTO jobs (script, cwd, argv, kwargs, commit_id, tree, queued) "
                "VALUES ('train.py', '.', '[]', '{}', 'c', 't', 0)")
    old.commit()
    old.close()
    (job,) = queue.jobs(g)
    assert job.big == [] and job.script == "train.py"
