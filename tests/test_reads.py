"""The plan's read-set check (services/replay/reads.py) on FlorDB-style scripts: the
loops it takes for the skipped ones are discover's (aliases, the main-loop rule), and a
loop's effects follow the script's own functions, as at run time."""

from __future__ import annotations

from flor_cli.services.replay.reads import unheld_reads

OLD_RUN = [{}]  # a checkpoint recorded before checkpoints listed what they missed (nc)

# FlorDB 2: flor.it is the main loop; the nested loop (step) has a plain one inside
THREE_DEEP = '''import flor
from flor import MTK

state = {"w": 0.0}
MTK.checkpoints(state=state)
for epoch in flor.it(range(3)):
    for step in MTK.loop(range(4)):
        hidden = step * 2
        for micro in MTK.loop(range(2)):
            state["w"] += micro
    flor.log("h", hidden)
'''

CALLS = '''import flor
from flor import MTK

count = 0


def bump():
    global count
    count += 1


state = {"w": 0.0}
MTK.checkpoints(state)
for epoch in flor.it(range(3)):
    for step in MTK.loop(range(4)):
        state["w"] += step
        bump()
    flor.log("count", count)
'''


def test_the_skipped_loop_is_the_nested_one_however_flor_db_spells_it() -> None:
    """Not the innermost: the step loop is what replay skips, so what it binds (hidden)
    and the epoch code reads is not held by an old run's checkpoint."""
    assert unheld_reads(THREE_DEEP, OLD_RUN, checkpointing=True) == ["hidden"]


def test_what_a_called_function_changes_counts_and_declared_objects_do_not() -> None:
    """bump() changes the global count, read after the skipped loop; state is given to
    MTK.checkpoints (restored by its own state, not a frame read)."""
    assert unheld_reads(CALLS, OLD_RUN, checkpointing=True) == ["count"]
    assert unheld_reads(CALLS, [{"nc": []}], checkpointing=True) == []


CARRIED = '''import flor

state = {"w": 0.0}
hidden, out = 0, None
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(4)):
            out = step * 2
            state["w"] += out
            hidden = hidden + out
'''


def test_nested_workers_mind_only_what_a_loop_carries_from_its_last_iteration() -> None:
    """A worker that fast-forwards to its epochs re-executes their nested loops after a
    restore: what those read before binding it (hidden) must be held; what they bind
    first (out, too big to capture say) need not be."""
    ckpts = [{"nc": ["hidden", "out"]}]
    assert unheld_reads(CARRIED, ckpts, within=True) == ["hidden"]
    assert unheld_reads(CARRIED, ckpts) == []
    assert unheld_reads(CARRIED, OLD_RUN, within=True) == ["hidden"]


def test_a_version_s_code_is_parsed_once_for_all_its_runs(monkeypatch) -> None:
    """libcst takes ~0.1 s a parse; a plan checks every run, its version's runs sharing
    one transplanted code."""
    from flor_cli.services.replay import reads

    made = []

    class Counting(reads.Script):
        def __init__(self, *args, **kwargs) -> None:
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(reads, "Script", Counting)
    source = CALLS + "# a version of its own\n"
    for _ in range(3):
        assert unheld_reads(source, OLD_RUN) == ["count"]
    assert len(made) == 1
