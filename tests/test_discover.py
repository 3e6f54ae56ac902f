"""Which flor.log statements a script has, and the phase of training each runs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from flor_cli.errors import UserError
from flor_cli.services.replay.discover import LEVELS, Statement, find_statements, logged_names

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "transplant"

INLINE = '''\
import flor

lr = flor.arg("lr", 0.1)
flor.log("lr", lr)
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(3)):
        flor.log("epoch_start", epoch)
        for x, y in flor.loop("step", loader):
            loss = step(x, y)
            flor.log("loss", loss)
        flor.log("val_acc", evaluate(model))
flor.log("test_acc", 0.9)
'''


def levels(source: str) -> dict[str, str]:
    return {s.name: s.level for s in find_statements(source, logged_names(source))}


def test_every_level_inline() -> None:
    assert levels(INLINE) == {"lr": "prefix", "epoch_start": "outer_before", "loss": "nested",
                              "val_acc": "outer_after", "test_acc": "suffix"}
    assert set(levels(INLINE).values()) == set(LEVELS)


def test_statement_has_its_line_and_source() -> None:
    assert find_statements(INLINE, ["loss"]) == [
        Statement("loss", "nested", 'flor.log("loss", loss)', 10)]


def test_functions_take_the_level_of_their_call_site() -> None:
    source = '''\
import flor

def train_one_epoch(model, loader):
    model.train()
    for batch in flor.loop("step", loader):
        flor.log("loss", model(batch))
    flor.log("epoch_loss", 0.0)

def evaluate(net):
    flor.log("val_acc", accuracy(net))

def report():
    flor.log("best", 1.0)

with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(10)):
        train_one_epoch(model, loader)
        evaluate(model)
report()
'''
    assert levels(source) == {"loss": "nested", "epoch_loss": "outer_after",
                              "val_acc": "outer_after", "best": "suffix"}


def test_methods_resolve_by_name() -> None:
    source = '''\
import flor

class Trainer:
    def __init__(self, model):
        self.model = model
        flor.log("params", count(model))

    def evaluate(self):
        flor.log("val_loss", 0.5)

    def step(self, batch):
        flor.log("loss", self.model(batch))

    def fit(self, epochs):
        with flor.checkpointing(model=self.model):
            for epoch in flor.loop("epoch", range(epochs)):
                self.model.train()
                for batch in flor.loop("step", self.loader):
                    self.step(batch)
                self.evaluate()

if __name__ == "__main__":
    trainer = Trainer(build())
    trainer.fit(5)
'''
    assert levels(source) == {"params": "prefix", "val_loss": "outer_after", "loss": "nested"}


def test_main_loop_is_the_one_inside_checkpointing() -> None:
    source = '''\
import flor
for shard in flor.loop("prep", shards):
    flor.log("shard_size", len(shard))
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(3)):
        flor.log("lr", lr)
'''
    assert levels(source) == {"shard_size": "prefix", "lr": "outer_before"}


def test_without_checkpointing_the_first_loop_is_main() -> None:
    source = '''\
from flor import log, loop
log("seed", 0)
for epoch in loop("epoch", range(3)):
    for i, batch in enumerate(loop("step", batches)):
        log("loss", 1.0)
log("done", 1)
'''
    assert levels(source) == {"seed": "prefix", "loss": "nested", "done": "suffix"}


def test_without_a_loop_everything_is_suffix() -> None:
    assert levels('import flor\nflor.log("a", 1)\nx = 2\nflor.log("b", x)\n') == \
        {"a": "suffix", "b": "suffix"}


def test_logged_names_in_order_of_first_appearance() -> None:
    source = ('import flor\nflor.log("b", 1)\nflor.log("a", 2)\nflor.log("b", 3)\n'
              'flor.log(name, 4)\nflor.log(f"x{i}", 5)\n')
    assert logged_names(source) == ["b", "a"]


def test_unknown_name_lists_the_known_ones() -> None:
    source = ('import flor\nflor.log("loss", 1)\nflor.log("val_acc", 2)\n'
              'flor.log("accuracy", 3)\n')
    with pytest.raises(UserError) as raised:
        find_statements(source, ["loss", "grad"])
    assert str(raised.value) == "unknown name 'grad': train.py logs loss, val_acc, accuracy"


def test_syntax_error_is_a_user_error() -> None:
    with pytest.raises(UserError, match="train.py: syntax error"):
        logged_names("for x in\n")


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir()
                                         if (p / "expected.py").exists()))
def test_a_transplanted_statement_keeps_its_level(name: str) -> None:
    """Discovery finds every name in today's script and in the transplanted old one at
    the same level: the level decides the replay mode, so a statement placed at another
    level would be replayed in the wrong mode."""
    folder = CORPUS / name
    names = [n.strip() for n in (folder / "names.txt").read_text().split(",")]
    now = find_statements((folder / "now.py").read_text(), names)
    assert {s.name for s in now} == set(names)
    placed = find_statements((folder / "expected.py").read_text(), names)
    assert sorted((s.name, s.level) for s in placed) == sorted((s.name, s.level) for s in now)
