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

from conftest import flor, flor_json, make_repo
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
