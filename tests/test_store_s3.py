"""Checkpoints on object storage: an S3 store (moto's server on 127.0.0.1) shared by clones.

A pushes its runs and uploads their checkpoints; B, a fresh clone that pulls the notes and
names the same store, replays from them (fetched on demand into its own objects directory)
with exactly the values a full run logs; an object tampered with in the bucket is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from conftest import cli, flor, flor_json, git, make_repo
from flor_cli.storage.git import Git
from flor_cli.storage.objects import BadObject, configured_store
from test_sync import clone_pair, record

BUCKET = "flor-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free local port, with one bucket; stopped after the module.
    Yields the AWS_* environment that points boto3 and s3fs at it."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def keys(client, prefix: str) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"] for o in listed}


def test_clone_replays_from_s3_and_refuses_a_tampered_object(s3, repo: Path,
                                                              tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/team/objects"
    a, b, _ = clone_pair(repo, tmp_path)
    git(a, "config", "flor.store", url)
    run = record(a)
    shown = json.loads(flor(a, "show", run, "--format", "json").stdout)
    shas = {o["sha"] for r in shown["records"] if r["t"] == "ckpt" for o in r["objs"].values()}
    assert shas and all((a / ".git/flor/objects" / s[:2] / s[2:]).is_file() for s in shas)
    assert keys(s3, "team/") == set()  # recording writes locally; push uploads

    out = flor(a, "push").stdout
    assert f"copied {len(shas)} checkpoint objects to {url}" in out
    assert keys(s3, "team/") == {f"team/objects/{s[:2]}/{s[2:]}" for s in shas}
    assert "copied 0 checkpoint objects" in flor(a, "push").stdout
    assert "AWS" not in (a / ".git" / "config").read_text()  # credentials never stored

    flor(b, "pull")
    assert [r["checkpoints"] for r in flor_json(b, "log")] == ["missing"]
    git(b, "config", "flor.store", url)
    assert [r["checkpoints"] for r in flor_json(b, "log")] == ["here"]

    # B adds a hindsight statement identical to val_acc: the replayed values must be its.
    script = (b / "train.py").read_text()
    anchor = '        flor.log("val_acc", evaluate(net))\n'
    (b / "train.py").write_text(script.replace(
        anchor, anchor + '        flor.log("val_again", evaluate(net))\n'))
    flor(b, "replay", "val_again", "--yes")
    note = json.loads(flor(b, "show", run, "--format", "json").stdout)
    (rp,) = note["replays"]
    assert rp["mode"] == "skip" and rp["restored"] >= 2
    got = {json.dumps(r["c"]): r["v"] for r in note["records"]
           if r["t"] == "log" and r["n"] == "val_again"}
    want = {json.dumps(r["c"]): r["v"] for r in note["records"]
            if r["t"] == "log" and r["n"] == "val_acc"}
    assert got == want and len(got) == 2
    fetched = {p.parent.name + p.name for p in (b / ".git/flor/objects").glob("*/*")}
    assert fetched and fetched <= shas  # fetched on demand, cached locally

    # Tamper with every object in the bucket; B forgets its cache and must refuse them
    # (in-process: the check is the store's, whoever reads).
    shutil.rmtree(b / ".git/flor/objects")
    for key in keys(s3, "team/"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not a checkpoint")
    store = configured_store(Git(b))
    sha = sorted(shas)[0]
    assert store.has(sha)
    with pytest.raises(BadObject, match="does not match its digest"):
        store.get(sha)
    assert not store.path(sha).exists()  # nothing unverified is cached




def test_a_backend_whose_fsspec_package_is_missing_is_one_line(tmp_path: Path) -> None:
    """docs/distributed.md: gs:// needs gcsfs, which flor does not depend on."""
    from importlib.util import find_spec

    pytest.importorskip("fsspec")
    if find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    repo = make_repo(tmp_path / "repo", files={"train.py": (
        "import flor\nstate = {'w': 0}\nwith flor.checkpointing(state=state):\n"
        "    for epoch in flor.loop('epoch', range(2)):\n"
        "        for step in flor.loop('step', range(2)):\n"
        "            state['w'] += 1\n"
        "        flor.log('w', state['w'])\n")})
    git(repo, "config", "flor.store", "gs://flor-test/objects")
    flor(repo, "run", "train.py")  # checkpoints are written locally
    proc = cli(repo, "log", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "flor: flor.store gs://flor-test/objects: Please install gcsfs to access Google Storage"]
