"""torchrun --nproc_per_node 2 (gloo on CPU) records one run: rank 0's, without duplicates."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from conftest import flor, flor_json, fixture_script, make_repo


def test_torchrun_records_one_run_from_rank_0(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"train.py": fixture_script("ddp_train.py")})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                           "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                           "--master_port", str(port), "train.py", "--kwargs", "lr=0.05"],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run,) = flor_json(repo, "log")
    assert run["status"] == "ok" and run["lr"] == 0.05 and run["lr_seen"] == 0.05
    note = json.loads(flor(repo, "show", run["run"], "--format", "json").stdout)
    logs = [(r["n"], json.dumps(r.get("c"), sort_keys=True)) for r in note["records"]
            if r["t"] == "log"]
    assert len(logs) == len(set(logs)) == 2 * 2 + 2 + 1  # each value once
    assert {r["v"] for r in note["records"] if r.get("n") == "rank_seen"} == {0}
    assert sum(1 for r in note["records"] if r["t"] == "ckpt") >= 1  # rank 0 checkpoints
    assert not list((repo / ".git" / "flor" / "journals").glob("*"))
