"""Checkpoints: every kind of object comes back in place, RNG included; thinning obeys 1/15."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from flor_cli.runtime.checkpoint import Checkpointer, restore
from flor_cli.storage.objects import ObjectStore


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.history: list[int] = []


def capture(objects: dict, tmp_path: Path) -> tuple[dict, ObjectStore]:
    store = ObjectStore(tmp_path / "objects")
    records: list[dict] = []
    ckpt = Checkpointer(objects, store, records.append)
    ckpt.maybe_capture({"epoch": 0}, 0, 0, last=False, loop_seconds=1.0)
    ckpt.close()
    [record] = records
    return record, store


def test_state_comes_back_in_place_with_rng(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    table, seq, arr, counter = {"a": 1}, [1, 2], np.arange(4.0), Counter()
    counter.n, counter.history = 5, [1, 2]
    objects = {"net": net, "opt": opt, "table": table, "seq": seq, "arr": arr, "c": counter}
    random.seed(3)
    np.random.seed(3)
    record, store = capture(objects, tmp_path)
    expected = (net.weight.detach().clone(), random.random(), np.random.rand(), torch.rand(1))

    with torch.no_grad():
        net.weight.add_(1.0)
    opt.param_groups[0]["lr"] = 5.0
    table["b"] = 2
    seq.append(3)
    arr += 10
    counter.n = 99
    random.random(), np.random.rand(), torch.rand(1)

    restore(objects, record, store)
    assert torch.equal(net.weight, expected[0])
    assert opt.param_groups[0]["lr"] == 0.1
    assert table == {"a": 1} and seq == [1, 2] and list(arr) == [0.0, 1.0, 2.0, 3.0]
    assert counter.n == 5 and counter.history == [1, 2] and objects["c"] is counter
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected[1:]


class TenMillisecondCheckpoints(Checkpointer):
    """The cost the writer would measure, fixed so the schedule is deterministic."""

    cost = property(lambda self: 0.01, lambda self, value: None)


def test_adaptive_period_keeps_cost_under_one_fifteenth(tmp_path: Path) -> None:
    taken: list[int] = []
    ckpt = TenMillisecondCheckpoints({"x": {"v": 1}}, ObjectStore(tmp_path),
                                     lambda r: taken.append(r["c"]["epoch"]))
    for epoch in range(20):
        # a 30 ms loop: 15 * 10 ms / 30 ms -> every 5th epoch, plus first and last
        ckpt.maybe_capture({"epoch": epoch}, 0, epoch, last=epoch == 19, loop_seconds=0.03)
    ckpt.close()
    assert taken == [0, 5, 10, 15, 19]


def test_slow_loops_are_checkpointed_every_iteration(tmp_path: Path) -> None:
    taken: list[int] = []
    ckpt = Checkpointer({"x": [1]}, ObjectStore(tmp_path), lambda r: taken.append(r["c"]["epoch"]))
    for epoch in range(5):
        ckpt.maybe_capture({"epoch": epoch}, 0, epoch, last=False, loop_seconds=10.0)
    ckpt.close()
    assert taken == list(range(5))


def test_content_addressed_store_deduplicates(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    a, b = store.put(b"same"), store.put(b"same")
    assert a == b and store.get(a) == b"same"
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1
