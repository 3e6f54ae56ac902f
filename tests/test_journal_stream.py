"""The stream a session hands its writer: every record keeps the loop context it was
logged in, across batches and when the writer process dies mid-run."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli, flor, make_repo
from flor_cli.runtime.writer import LineFormatter


def test_formatter_gives_each_record_the_context_in_force() -> None:
    formatter = LineFormatter()
    first = formatter.lines([
        "start", "abc",
        ("epoch", 0), ("epoch", 0, "step", 0), "loss", 0.5, "ok", True,
        ("epoch", 0, "step", 1), "loss", float("inf"),
    ])
    # a new batch: the context carries over; a dict log record gets it too
    second = formatter.lines([
        "loss", None, {"t": "log", "n": "w", "v": [1, 2], "ty": "torch.Tensor"},
        ("epoch", 0), "n", 7, {"t": "time", "k": "outer", "c": {"epoch": 0}, "sec": 1.5},
        (), "final", "é\"",
    ])
    records = [json.loads(line) for line in first + second]
    step1 = {"epoch": 0, "step": 1}
    assert records == [
        {"t": "log", "s": 0, "n": "start", "v": "abc", "c": {}},
        {"t": "log", "s": 1, "n": "loss", "v": 0.5, "c": {"epoch": 0, "step": 0}},
        {"t": "log", "s": 2, "n": "ok", "v": True, "c": {"epoch": 0, "step": 0}},
        {"t": "log", "s": 3, "n": "loss", "v": "inf", "ty": "builtins.float", "c": step1},
        {"t": "log", "s": 4, "n": "loss", "v": None, "c": step1},
        {"t": "log", "s": 5, "n": "w", "v": [1, 2], "ty": "torch.Tensor", "c": step1},
        {"t": "log", "s": 6, "n": "n", "v": 7, "c": {"epoch": 0}},
        {"t": "time", "s": 7, "k": "outer", "c": {"epoch": 0}, "sec": 1.5},
        {"t": "log", "s": 8, "n": "final", "v": "é\"", "c": {}},
    ]
    # the hand-built lines are byte-for-byte what json.dumps writes for the plain ones
    plain = [r for r in records if r["t"] == "log" and "ty" not in r]
    assert all(json.dumps(r, separators=(",", ":")) in first + second for r in plain)


KILLS_ITS_WRITER = '''
import time
import flor
from flor_cli.runtime import api

def until(condition):  # what a sleep only hoped for, however loaded the machine
    deadline = time.time() + 30
    while not condition() and time.time() < deadline:
        time.sleep(0.01)
    assert condition()

for e in flor.loop("epoch", range(3)):
    for s in flor.loop("step", range(4)):
        flor.log("x", e * 10 + s)
    if e == 0:
        session = api._session
        session.flush()
        sink = session._sink
        until(lambda: sink.outbox.empty() and (sink._read_acks() or not sink.in_flight))
        # ^ the writer process wrote and acknowledged every batch so far
        sink.proc.kill()
        sink.proc.wait()
        flor.log("in_flight", 1)  # may be lost with the pipe
        session.flush()
        until(lambda: sink.broken)  # the pipe breaks under this batch
        flor.log("after", 2)  # no loop marker between: its context comes from before
        session.flush()
flor.log("final", 3)
'''


def test_records_keep_their_context_when_the_writer_process_dies(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files={"kill.py": KILLS_ITS_WRITER})
    flor(repo, "run", "kill.py")
    note = json.loads(cli(repo, "show", "latest", "--format", "json").stdout)
    logs = [r for r in note["records"] if r["t"] == "log"]
    by_name = {r["n"]: r for r in logs if r["n"] != "x"}
    xs = [(r["c"]["epoch"], r["c"]["step"], r["v"]) for r in logs if r["n"] == "x"]
    assert xs == [(e, s, e * 10 + s) for e in range(3) for s in range(4)]
    assert by_name["after"]["c"] == {"epoch": 0} and by_name["after"]["v"] == 2
    assert by_name["final"]["c"] == {}
    assert set(by_name) <= {"in_flight", "after", "final"}
    seqs = [r["s"] for r in note["records"]]
    assert len(set(seqs)) == len(seqs)
    assert [r["s"] for r in logs] == sorted(r["s"] for r in logs)
