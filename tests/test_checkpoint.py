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
    seen = {"a"}  # a set comes back in place too, as it does in the loop's frame
    objects = {"net": net, "opt": opt, "table": table, "seq": seq, "arr": arr, "c": counter,
               "seen": seen}
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
    seen.add("b")
    random.random(), np.random.rand(), torch.rand(1)

    restore(objects, record, store)
    assert torch.equal(net.weight, expected[0])
    assert opt.param_groups[0]["lr"] == 0.1
    assert table == {"a": 1} and seq == [1, 2] and list(arr) == [0.0, 1.0, 2.0, 3.0]
    assert counter.n == 5 and counter.history == [1, 2] and objects["c"] is counter
    assert seen == {"a"} and objects["seen"] is seen
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


def test_a_module_comes_back_with_its_grads_and_training_flags(tmp_path: Path) -> None:
    """``.grad`` (None kept None, zeros kept zeros) and each submodule's mode are state."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5), torch.nn.Linear(2, 1))
    net(torch.randn(4, 3)).sum().backward()
    net[2].weight.grad.zero_()  # zero_grad(set_to_none=False) leaves zeros, not None
    net[2].bias.grad = None
    net[1].eval()
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    record, store = capture({"net": net}, tmp_path)

    net.zero_grad(set_to_none=True)
    net(torch.randn(4, 3)).sum().backward()
    net.train()
    restore({"net": net}, record, store)
    for param, grad in zip(net.parameters(), grads):
        assert (param.grad is None) == (grad is None)
        assert grad is None or torch.equal(param.grad, grad)
    assert [m.training for m in net] == [True, False, True] and net.training


def test_loop_effects_are_the_names_the_body_binds_and_mutates() -> None:
    import ast

    from flor_cli.runtime.effects import effects_of, loop_at

    source = '''\
for epoch in flor.loop("epoch", range(2)):
    for i, (x, y) in enumerate(
            flor.loop("step", loader)):
        loss = f(x)
        total += 1
        losses.append(loss.item())
        stats["avg"] = 0.5
        box.w += 1
        with ctx() as c:
            if (n := len(x)):
                pass
        squares = [k * k for k in range(3)]
        def g(a):
            b = a
        torch.nn.utils.clip_grad_norm_(params, 1.0)
    after = 1
'''
    loop = loop_at(ast.parse(source), 3)
    assert loop is not None and loop.lineno == 2
    fx = effects_of(loop)
    assert fx.bound == {"i", "x", "y", "loss", "total", "c", "n", "squares", "g"}
    assert fx.mutated == {"losses", "stats", "box", "torch"}


def _run_loop_in_a_function(record: list, restore_from: dict | None = None, store=None):
    """A loop in a function, its effects captured at the end, or restored instead."""
    import sys as _sys

    from flor_cli.runtime.checkpoint import capture_frame, restore_frame
    from flor_cli.runtime.effects import Effects

    class Trainer:
        def __init__(self, net):
            self.net, self.seen = net, []

    net = torch.nn.Linear(1, 1)
    trainer = Trainer(net)
    history = []
    alias = history
    count, last = 0, None
    fx = Effects(frozenset({"count", "last"}), frozenset({"history", "trainer"}))
    if restore_from is None:
        for step in range(3):
            count += 1
            last = step * 2
            history.append(step)
            trainer.seen.append(step)
        values, lists = capture_frame(_sys._getframe(), fx, {"net": net})
        record.append((values, lists))
    else:
        restore_frame(_sys._getframe(), restore_from, {"net": net})
    return count, last, alias, trainer.seen, trainer.net is net


def test_the_frame_comes_back_in_place_with_declared_objects_by_reference() -> None:
    captured: list = []
    done = _run_loop_in_a_function(captured)
    ((values, lists),) = captured
    assert lists == {"fx": ["count", "history", "last", "trainer"], "nc": []}
    assert _run_loop_in_a_function([], restore_from=values) == done == (3, 4, [0, 1, 2],
                                                                       [0, 1, 2], True)


def test_a_value_that_cannot_be_pickled_is_listed_as_not_captured() -> None:
    import sys as _sys

    from flor_cli.runtime.checkpoint import capture_frame
    from flor_cli.runtime.effects import Effects

    gen = (i for i in range(3))
    ok = 1
    values, lists = capture_frame(_sys._getframe(), Effects(frozenset({"gen", "ok"}),
                                                            frozenset()), {})
    assert lists == {"fx": ["ok"], "nc": ["gen"]} and set(values) == {"ok"}
