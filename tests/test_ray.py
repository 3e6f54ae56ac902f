"""Ray as the engine: a sweep and a replay through a local Ray cluster give the notes the
local engine gives, and the workers never touch the driver's repository.

One cluster for the module (``ray start --head --block`` on 127.0.0.1 with its own temp
dir, 2 CPUs), stopped by terminating that process. The script counts every file it opens
under the driver's repositories (an audit hook) and whether it runs inside one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import flor, flor_json, git, make_repo
from flor_cli.storage import notes
from flor_cli.storage.git import Git

MARK = "flor-driver-repo"
SCRIPT = f"""\
import os, random, sys

opened = [os.getcwd()] if {MARK!r} in os.getcwd() else []
sys.addaudithook(lambda event, args: opened.append(args[0]) if event == "open"
                 and {MARK!r} in str(args[0]) else None)
import flor

scale = flor.arg("scale", 1.0)
random.seed(flor.arg("seed", 0))
state = {{"w": 0.0}}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(2)):
        for step in flor.loop("step", range(3)):
            state["w"] += scale * random.random()
            flor.log("loss", state["w"])
        flor.log("val", state["w"] * 2)
flor.log("opened", len(opened))
"""
HINDSIGHT = SCRIPT.replace('        flor.log("val", state["w"] * 2)\n',
                           '        flor.log("val", state["w"] * 2)\n'
                           '        flor.log("half", state["w"] / 2)\n'
                           ).replace('flor.log("opened", len(opened))\n',
                                     'flor.log("opened", len(opened))\n'
                                     'flor.log("seen", len(opened))\n')


@pytest.fixture(scope="module")
def ray_env():
    """The cluster's address, and the environment that reaches it: Ray's token
    authentication with a token of this module's own (not ~/.ray/auth_token, which a
    local ``ray.init`` may create or replace meanwhile)."""
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray puts sockets in it
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--num-gpus", "0", "--temp-dir", temp, "--include-dashboard", "false",
         "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert head.poll() is None, head.stderr.read()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.time() < deadline, "ray start did not come up"
            time.sleep(0.2)
        yield address, env
    finally:
        head.terminate()  # --block: stopping it stops the processes it started, only those
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def run_notes(repo: Path) -> list:
    """Every run's note, read in-process (a `flor show` per run would cost seconds)."""
    git = Git(repo)
    return [notes.parse(commit, git.blob_text(blob)) for commit, blob in git.iter_notes()]


def logs(repo: Path, names: set[str] | None = None, replayed: bool = False) -> dict:
    """kwargs of each run -> sorted (name, context, value) of its log records."""
    return {json.dumps(note.header["kwargs"], sort_keys=True):
            sorted((r["n"], json.dumps(r.get("c", {}), sort_keys=True), r["v"])
                   for r in note.records if r["t"] == "log"
                   and (names is None or r["n"] in names) and bool(r.get("rp")) == replayed)
            for note in run_notes(repo)}


def test_sweep_and_replay_on_ray_equal_the_local_engine(ray_env, tmp_path: Path) -> None:
    ray_address, env = ray_env
    local = make_repo(tmp_path / f"{MARK}-local", files={"train.py": SCRIPT})
    flor(local, "sweep", "train.py", "--grid", "scale=1,2", "seed=1,2")
    on_ray = tmp_path / f"{MARK}-ray"
    shutil.copytree(local, on_ray)  # the same queue, the same code

    flor(local, "serve", "--workers", "2")
    out = flor(on_ray, "serve", f"--ray={ray_address}", env=env)
    assert "4 done, 0 failed" in out.stdout, out.stderr
    assert [j["state"] for j in flor_json(on_ray, "queue")] == ["done"] * 4

    recorded = {"loss", "val"}
    assert logs(on_ray, recorded) == logs(local, recorded) and len(logs(local)) == 4
    assert all(("opened", "{}", 0) in recs for recs in logs(on_ray).values())
    assert all(("opened", "{}", 0) not in recs for recs in logs(local).values())  # it can fail
    ckpts = [r for note in run_notes(on_ray) for r in note.records if r["t"] == "ckpt"]
    assert len(ckpts) == 4 * 2  # the workers' checkpoints came back to the driver
    shas = {o["sha"] for c in ckpts for o in c["objs"].values()}
    assert all((on_ray / ".git/flor/objects" / s[:2] / s[2:]).is_file() for s in shas)

    for repo in (local, on_ray):
        (repo / "train.py").write_text(HINDSIGHT)
    flor(local, "replay", "half,seen", "--yes")
    flor(on_ray, "replay", "half,seen", "--yes", f"--ray={ray_address}", env=env)
    half = logs(local, {"half"}, replayed=True)
    assert half == logs(on_ray, {"half"}, replayed=True) and all(len(v) == 2 for v in half.values())
    assert all(recs == [("seen", "{}", 0)]
               for recs in logs(on_ray, {"seen"}, replayed=True).values())
    for note in run_notes(on_ray):
        (rp,) = note.replays
        assert rp["mode"] == "skip" and rp["restored"] == 2  # from the shipped checkpoints


class InProcessCluster:
    """The part of ray_engine.Cluster that RayReplay uses, played in this process: a
    task (the real ``run_task``, its script a subprocess) runs when first waited on;
    submissions and cancellations are listed."""

    def __init__(self) -> None:
        self.ray = self  # RayReplay calls cluster.ray.put/wait/get/cancel
        self.submitted: list[dict] = []
        self.cancelled: list[int] = []
        self.results: dict[int, dict] = {}

    def archive(self, git: Git, rev: str) -> bytes:
        return git.archive(rev)

    def put(self, value):
        return value

    def submit(self, gpus: float, **kwargs) -> int:
        self.submitted.append(kwargs)
        return len(self.submitted) - 1

    def wait(self, refs: list, timeout: float | None = None) -> tuple[list, list]:
        return refs, []

    def get(self, ref: int) -> dict:
        from flor_cli.services.ray_engine import run_task

        if ref not in self.results:
            self.results[ref] = run_task(**self.submitted[ref])
        return self.results[ref]

    def cancel(self, ref: int, force: bool = False) -> None:
        self.cancelled.append(ref)


def test_ray_replay_submits_every_task_first_verifying_ones_and_needs_no_worktree(
        tmp_path: Path) -> None:
    from flor_cli.services.ray_engine import RayReplay
    from flor_cli.services.replay import api
    from flor_cli.services.replay.execute import execute

    repo = make_repo(tmp_path / "repo", files={"train.py": SCRIPT})
    flor(repo, "sweep", "train.py", "--grid", "scale=1,2")
    (repo / "train.py").write_text(SCRIPT + "# another version of the code\n")
    flor(repo, "sweep", "train.py", "--grid", "scale=3")
    flor(repo, "serve")  # one at a time: runs scale 1, 2 (code X), then 3 (code Y)
    (repo / "train.py").write_text(HINDSIGHT)
    git = Git(repo)

    def plan_and_launcher():
        plan = api.plan(git, ["half"])
        cluster = InProcessCluster()
        return plan, cluster, RayReplay(cluster, git, plan, 0.0)

    plan, cluster, launcher = plan_and_launcher()
    x1, x2, y1 = plan.runnable
    assert [j.args["scale"] for j in plan.runnable] == [1, 2, 3]
    assert x1.check is not None and x2.check is None and y1.check is not None
    tasks = [(c["replay"].args["scale"], c["replay"].mode, c["replay"].range)
             for c in cluster.submitted]
    assert tasks == [(1, "skip", None), (1, "nested", x1.check), (3, "skip", None),
                     (3, "nested", y1.check), (2, "skip", None)]
    # a worker nobody foresaw (x1 re-executed: its verification found a difference):
    # code X's tasks are cancelled (those that restore, and x1's check, moot now: here
    # still pending), code Y's are not
    config = cluster.submitted[0]["replay"]._replace(mode="nested", range=[0, None],
                                                     journal=str(tmp_path / "j.jsonl"))
    launcher(x1, [], Path(), {"FLOR_REPLAY": config.to_json()}, tmp_path / "j.log")
    assert sorted(cluster.cancelled) == [0, 1, 4] and len(cluster.submitted) == 6

    plan, cluster, launcher = plan_and_launcher()
    outcome = execute(git, plan, launch=launcher)
    assert len(outcome.done) == 3 and not outcome.failed and len(outcome.verified) == 2
    assert not (repo / ".git/flor/worktrees").exists()  # the tasks brought the code
    assert len(cluster.submitted) == 5 and not cluster.cancelled
    for note in run_notes(repo):
        val = [r["v"] for r in note.records if r["t"] == "log" and r["n"] == "val"]
        half = [r["v"] for r in note.records if r["t"] == "log" and r["n"] == "half"]
        assert half == [v / 4 for v in val] and len(half) == 2


def test_a_task_replaces_a_linked_script_instead_of_writing_through_the_link(
        tmp_path: Path) -> None:
    from flor_cli.services.ray_engine import run_task

    repo = make_repo(tmp_path / "repo", files={"real.py": "print('old')\n"})
    (repo / "train.py").symlink_to("real.py")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a linked script")
    result = run_task(Git(repo).archive("HEAD"), {"train.py": b"print('new')\n"}, {},
                      ["-c", "import runpy; runpy.run_path('train.py'); "
                             "print(open('real.py').read())"],
                      ".", "", {}, None, None)
    assert result["code"] == 0 and result["output"].split() == ["new", "print('old')"]


def test_on_ray_a_failed_verifying_run_passes_its_check_on_and_cancels_nothing(
        tmp_path: Path) -> None:
    """The verifying run of a code fails: the next run of the code verifies it (execute's
    scheduler), and its checking task, which nobody foresaw, is a check, not a
    re-execution: the code's other tasks are not cancelled and submitted again."""
    from flor_cli.services.ray_engine import RayReplay
    from flor_cli.services.replay import api
    from flor_cli.services.replay.execute import execute

    repo = make_repo(tmp_path / "repo", files={"train.py": SCRIPT})
    flor(repo, "sweep", "train.py", "--grid", "scale=1,2,3")
    flor(repo, "serve")
    (repo / "train.py").write_text(HINDSIGHT.replace('state["w"] / 2)',
                                                     'state["w"] / 2 / (scale - 1))'))
    git = Git(repo)
    plan = api.plan(git, ["half"])
    cluster = InProcessCluster()
    x1, x2, x3 = plan.runnable
    assert [j.args["scale"] for j in plan.runnable] == [1, 2, 3] and x1.check is not None
    outcome = execute(git, plan, launch=RayReplay(cluster, git, plan, 0.0))
    assert list(outcome.failed) == [x1.run] and sorted(outcome.done) == sorted([x2.run, x3.run])
    (check,) = outcome.verified
    assert check.run == x2.run and check.failed is None and check.compared > 0
    assert cluster.cancelled == [] and len(cluster.submitted) == 5


def test_on_ray_a_re_execution_cancels_its_code_s_nested_workers_that_fast_forward(
        tmp_path: Path) -> None:
    """--workers 2, nested: after a verification fails the code's runs re-execute with
    one worker, so every pending task of theirs with an epoch range is moot (the second
    worker restores to reach its epochs): cancelled, not left running to the end."""
    from flor_cli.services.ray_engine import RayReplay
    from flor_cli.services.replay import api

    repo = make_repo(tmp_path / "repo", files={"train.py": SCRIPT})
    flor(repo, "sweep", "train.py", "--grid", "scale=1,2")
    flor(repo, "serve")
    (repo / "train.py").write_text(SCRIPT.replace(
        '            flor.log("loss", state["w"])\n',
        '            flor.log("loss", state["w"])\n            flor.log("sq", state["w"] ** 2)\n'))
    git = Git(repo)
    plan = api.plan(git, ["sq"], workers=2)
    x1, x2 = plan.runnable
    assert (x1.mode, x1.workers, x1.check, x2.check) == ("nested", 2, [0, 2], None)
    cluster = InProcessCluster()
    launcher = RayReplay(cluster, git, plan, 0.0)
    ranges = [c["replay"].range for c in cluster.submitted]
    assert ranges == [[0, 1], [1, None], [0, 2], [0, 1], [1, None]]
    config = cluster.submitted[0]["replay"]._replace(range=None, journal=str(tmp_path / "j"))
    launcher(x1, [], Path(), {"FLOR_REPLAY": config.to_json()}, tmp_path / "j.log")
    assert sorted(cluster.cancelled) == [0, 1, 2, 3, 4] and len(cluster.submitted) == 6
