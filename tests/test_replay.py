"""Hindsight replay: new flor.log statements backfilled into old runs, exactly.

The reference for every replayed value is what a full run of the patched old script
(today's statements transplanted into the run's code, run from scratch with the run's
args) logs: replay must give the same floats, compared with ``==``.

Two scripts: the torch fixtures in ``fixtures/versions`` (three versions of a training
script; runs recorded on v1 and v2, v3 is today's) for exactness at every level across
versions, and a small pure-Python script (fast) for failures, bad input and hygiene.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import FIXTURES, FLOR, cli, flor, flor_json, git, make_repo
from flor_cli.services.replay.transplant import transplant
from test_record import repo_state

VERSIONS = {v: (FIXTURES / "versions" / v / "train.py").read_text() for v in ("v1", "v2", "v3")}
TORCH_NAMES = ["n_params", "grad_norm", "weight_norm", "final_weight_norm"]
TINY = ["epochs=3", "batches=4"]

# -- helpers -------------------------------------------------------------------------------


def show(repo: Path, run: str) -> dict:
    return json.loads(cli(repo, "show", run, "--format", "json").stdout)


def values(note: dict, names: list[str], rp: str | None = None) -> list[tuple]:
    """(name, loop context, value) of ``names``: the original records, or one replay's."""
    return sorted((r["n"], json.dumps(r.get("c", {}), sort_keys=True), r["v"])
                  for r in note["records"]
                  if r.get("t") == "log" and r["n"] in names and r.get("rp") == rp)


def replays(repo: Path, run: str) -> list[dict]:
    return show(repo, run)["replays"]


def reference(path: Path, script: str, kwargs: list[str], extra: dict | None = None
              ) -> subprocess.Popen:
    """Start a full ``flor run`` of ``script`` in a fresh repository (the exact answer)."""
    make_repo(path, files={"train.py": script, **(extra or {})})
    return subprocess.Popen([*FLOR, "run", "train.py", "--kwargs", *kwargs], cwd=path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, path: Path) -> dict:
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return show(path, "latest")


def copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def assert_clean(repo: Path) -> None:
    """No worktree, journal or scratch file of a replay left behind."""
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    for sub in ("worktrees", "journals"):
        path = repo / ".git" / "flor" / sub
        assert not path.exists() or not any(path.iterdir()), sub


def bad_input(repo: Path, *args: str, expect: str) -> None:
    """Exit 2, one line on stderr saying ``expect``, and nothing written."""
    before = refs(repo)
    proc = flor(repo, "replay", *args, check=False, input="")  # stdin: not a terminal
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expect in lines[0], lines[0]
    assert refs(repo) == before
    assert_clean(repo)


def nothing_to_do(repo: Path, name: str) -> None:
    """A replay of a name every run has says so, exits 0 and writes nothing."""
    before = refs(repo)
    proc = flor(repo, "replay", name, "--yes")
    assert proc.stderr.strip() == (f"nothing to do: every run already has {name} "
                                   "(use --where to replay some again)")
    assert proc.stdout == "" and refs(repo) == before


# -- torch fixtures: exactness at every level, across versions ---------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> SimpleNamespace:
    """Run A on v1 (lr=0.05), run B on v2 (lr=0.02), then v3 committed; and references."""
    base = tmp_path_factory.mktemp("versions")
    kwargs = {"A": [*TINY, "lr=0.05"], "B": [*TINY, "lr=0.02"]}
    procs = {key: reference(base / f"ref-{key}", transplant(TORCH_NAMES, VERSIONS["v3"],
                                                            VERSIONS[old]), kwargs[key])
             for key, old in (("A", "v1"), ("B", "v2"))}  # meanwhile, record A and B
    repo = make_repo(base / "repo", files={"train.py": VERSIONS["v1"], ".gitignore": "data/\n"})
    flor(repo, "run", "train.py", "--kwargs", *kwargs["A"])
    (repo / "train.py").write_text(VERSIONS["v2"])
    git(repo, "commit", "-qam", "v2: rename model to net, reformat")
    flor(repo, "run", "train.py", "--kwargs", *kwargs["B"])
    (repo / "train.py").write_text(VERSIONS["v3"])
    git(repo, "commit", "-qam", "v3: hindsight logging")
    runs = {"A" if row["lr"] == 0.05 else "B": row["run"] for row in flor_json(repo, "log")}
    expected = {runs[k]: finished(p, base / f"ref-{k}") for k, p in procs.items()}
    return SimpleNamespace(repo=repo, runs=runs, expected=expected)


def test_one_replay_backfills_runs_of_every_version_exactly(recorded, tmp_path: Path) -> None:
    repo = copy_repo(recorded.repo, tmp_path / "repo")
    (repo / "untracked.txt").write_text("mine\n")
    (repo / "data").mkdir()
    (repo / "data" / "ignored.bin").write_bytes(b"\x00")
    before = repo_state(repo)
    names = ["weight_norm", "final_weight_norm"]
    proc = flor(repo, "replay", ",".join(names), "--yes")
    assert repo_state(repo) == before
    assert_clean(repo)
    for run, expected in recorded.expected.items():
        note = show(repo, run)
        (rp,) = note["replays"]
        assert rp["mode"] == "skip" and rp["names"] == names and rp["status"] == "ok"
        assert rp["restored"] >= 2  # first and last epoch are always checkpointed
        assert "weight_norm" in rp["src"]["weight_norm"]
        got = values(note, names, rp["rp"])
        assert len(got) == 3 + 1
        assert got == values(expected, names)
        assert run in proc.stdout  # the summary table of new values
    # the replayed values are queryable like recorded ones, and nothing is left to do
    assert {r["run"] for r in flor_json(repo, "log", "--pivot", "weight_norm")} == set(
        recorded.expected)
    nothing_to_do(repo, "weight_norm")


def test_prefix_statement_stops_at_the_main_loop(recorded, tmp_path: Path) -> None:
    repo = copy_repo(recorded.repo, tmp_path / "repo")
    run = recorded.runs["A"]
    flor(repo, "replay", "n_params", "--yes", "--where", "lr = 0.05")
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["mode"] == "prefix" and rp["restored"] == 0
    assert values(note, ["n_params"], rp["rp"]) == values(recorded.expected[run], ["n_params"])
    assert replays(repo, recorded.runs["B"]) == []


def test_nested_statement_with_two_workers_equals_one_worker_and_full_run(
        recorded, tmp_path: Path) -> None:
    repo = copy_repo(recorded.repo, tmp_path / "repo")
    flor(repo, "replay", "grad_norm", "--yes", "--workers", "2")
    for run, expected in recorded.expected.items():
        note = show(repo, run)
        (rp,) = note["replays"]
        assert rp["mode"] == "nested" and rp["workers"] == 2
        got = values(note, ["grad_norm"], rp["rp"])
        assert len(got) == 3 * 4
        assert got == values(expected, ["grad_norm"])
    run = recorded.runs["A"]
    flor(repo, "replay", "grad_norm", "--yes", "--where", f"run = '{run}'")
    note = show(repo, run)
    first, second = note["replays"]
    assert second["workers"] == 1
    assert values(note, ["grad_norm"], second["rp"]) == values(note, ["grad_norm"], first["rp"])
    assert_clean(repo)


# -- a fast pure-Python script: failures, bad input, hygiene ------------------------------

OLD = '''\
import os
import random
import time

import flor

random.seed(0)
epochs = flor.arg("epochs", 3)
scale = flor.arg("scale", 1.0)
offset = float(open("data/offset.txt").read()) + float(open("../shared.txt").read())
state = {"w": offset}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(4)):
            state["w"] += scale * random.random()
            time.sleep(float(os.environ.get("SLOW", 0)))
            flor.log("loss", state["w"])
        flor.log("val", state["w"] * 2)
flor.log("final", state["w"])
'''


def after(script: str, *additions: tuple[str, str]) -> str:
    """``script`` with each statement added below the line holding its anchor, alike indented."""
    for anchor, statement in additions:
        line = next(text for text in script.splitlines() if anchor in text)
        indent = line[:len(line) - len(line.lstrip())]
        script = script.replace(f"{line}\n", f"{line}\n{indent}{statement}\n", 1)
    return script


SQ_AND_HALF = (('flor.log("loss", state["w"])', 'flor.log("sq", state["w"] ** 2)'),
               ('flor.log("val", state["w"] * 2)', 'flor.log("half", state["w"] / 2)'))
NEW = after(OLD, ('state = {"w": offset}', 'flor.log("start", state["w"])'), *SQ_AND_HALF,
            ('flor.log("final", state["w"])', 'flor.log("total", state["w"] + 1)'))
NO_CKPT = (OLD.replace("with flor.checkpointing(state=state):\n", "if True:\n"))
DATA = {".gitignore": "data/\n", "data/offset.txt": "0.25\n"}


def small_repo(tmp_path: Path, script: str = OLD, runs: tuple[str, ...] = ("1.0",)) -> Path:
    """A repository whose script reads an ignored file and a sibling of the repo."""
    (tmp_path / "shared.txt").write_text("0.5\n")
    repo = make_repo(tmp_path / "repo", files={"train.py": script, **DATA})
    for scale in runs:
        flor(repo, "run", "train.py", "--kwargs", f"scale={scale}")
    return repo


def small_reference(tmp_path: Path, names: list[str], new: str, old: str, scale: str) -> dict:
    path = tmp_path / f"ref-{scale}"  # a sibling of the repo, for ../shared.txt
    return finished(reference(path, transplant(names, new, old), [f"scale={scale}"], DATA), path)


def run_ids(repo: Path) -> dict[float, str]:
    return {row["scale"]: row["run"] for row in flor_json(repo, "log")}


def test_every_level_from_the_working_tree_exact_and_user_state_untouched(tmp_path: Path) -> None:
    repo = small_repo(tmp_path, runs=("1.0", "0.5"))
    (repo / "train.py").write_text(NEW)  # today's statements, not committed
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    before = repo_state(repo)
    runs = run_ids(repo)
    expected = {scale: small_reference(tmp_path, ["start", "sq", "half", "total"], NEW, OLD,
                                       str(scale)) for scale in runs}
    for names, workers, mode in ((["half", "total"], "1", "skip"), (["sq"], "2", "nested"),
                                 (["start"], "1", "prefix")):
        flor(repo, "replay", ",".join(names), "--yes", "--workers", workers)
        for scale, run in runs.items():
            note = show(repo, run)
            rp = note["replays"][-1]
            assert rp["mode"] == mode
            assert values(note, names, rp["rp"]) == values(expected[scale], names)
            assert values(note, names, rp["rp"])
    assert repo_state(repo) == before
    assert_clean(repo)


def test_a_failed_run_appends_nothing_and_the_replay_can_resume(tmp_path: Path) -> None:
    repo = small_repo(tmp_path, runs=("1.0", "2.0"))
    runs = run_ids(repo)
    crashing = OLD.replace('        flor.log("val", state["w"] * 2)\n',
                           '        flor.log("val", state["w"] * 2)\n'
                           '        flor.log("inv", 1 / (scale - 2.0))\n')
    (repo / "train.py").write_text(crashing)
    note_b = git(repo, "notes", "--ref", "flor", "show", show(repo, runs[2.0])["commit"])
    proc = flor(repo, "replay", "inv", "--yes", check=False)
    assert proc.returncode == 1
    assert f"replay of run {runs[2.0]} failed" in proc.stderr
    assert "ZeroDivisionError" in proc.stderr
    assert git(repo, "notes", "--ref", "flor", "show", show(repo, runs[2.0])["commit"]) == note_b
    assert len(values(show(repo, runs[1.0]), ["inv"], replays(repo, runs[1.0])[0]["rp"])) == 3
    assert_clean(repo)
    plan = flor(repo, "replay", "inv", "--dry-run", "--format", "json").stdout
    assert [row["run"] for row in json.loads(plan)] == [runs[2.0]]
    (repo / "train.py").write_text(crashing.replace("1 / (scale - 2.0)", "scale - 2.0"))
    flor(repo, "replay", "inv", "--yes")
    assert [v for _, _, v in values(show(repo, runs[2.0]), ["inv"],
                                    replays(repo, runs[2.0])[0]["rp"])] == [0.0, 0.0, 0.0]
    assert len(replays(repo, runs[1.0])) == 1


def test_flor_replay_says_a_failed_run_on_stderr_as_flor_replay_does(tmp_path: Path) -> None:
    """The notebook API and the command run one replay flow: a failed run is said on
    stderr by both (the API used to list it only in the frame's attrs)."""
    repo = small_repo(tmp_path)
    (run,) = run_ids(repo).values()
    (repo / "train.py").write_text(after(OLD, ('flor.log("val", state["w"] * 2)',
                                               'flor.log("inv", 1 / (scale - 1.0))')))
    code = "import flor; df = flor.replay('inv', yes=True); print(sorted(df.attrs['failed']))"
    proc = subprocess.run([FLOR[0], "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"flor: replay of run {run} failed: " in proc.stderr
    assert "ZeroDivisionError" in proc.stderr
    assert proc.stdout.splitlines()[-1] == str([run])


def test_ctrl_c_kills_workers_removes_worktrees_and_writes_nothing(tmp_path: Path) -> None:
    repo = small_repo(tmp_path)
    (repo / "train.py").write_text(NEW)
    before = refs(repo)
    proc = subprocess.Popen([*FLOR, "replay", "sq", "--yes"], cwd=repo, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "SLOW": "0.5"})
    worktrees = repo / ".git" / "flor" / "worktrees"
    deadline = time.time() + 60
    while not list(worktrees.glob("*/repo/train.py")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the worker is inside its loop
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "flor: interrupted"
    assert refs(repo) == before
    assert_clean(repo)
    assert not list((repo / ".git" / "flor" / "replays").glob("*"))
    time.sleep(1.0)  # a worker left running would still be sleeping in its loop
    assert not [p for p in Path("/proc").glob("[0-9]*/cwd")
                if str(repo) in os.path.realpath(p)], "a worker outlived the replay"


def test_gpus_go_to_workers_round_robin(tmp_path: Path) -> None:
    repo = small_repo(tmp_path)
    (repo / "train.py").write_text(OLD.replace(
        '            flor.log("loss", state["w"])\n',
        '            flor.log("loss", state["w"])\n'
        '            flor.log("device", os.environ.get("CUDA_VISIBLE_DEVICES"))\n'))
    # --no-verify: a value that is each worker's own device would differ from a checking
    # worker's, rightly (nested workers are verified)
    flor(repo, "replay", "device", "--yes", "--workers", "2", "--gpus", "3,5", "--no-verify")
    (run,) = run_ids(repo).values()
    note = show(repo, run)
    rp = note["replays"][0]["rp"]
    got = {(json.loads(c)["epoch"], v) for _, c, v in values(note, ["device"], rp)}
    assert got == {(0, "3"), (1, "5"), (2, "5")}


def test_runs_without_checkpoints_replay_by_re_execution(tmp_path: Path) -> None:
    repo = small_repo(tmp_path, script=NO_CKPT)
    new = NEW.replace("with flor.checkpointing(state=state):\n", "if True:\n")
    (repo / "train.py").write_text(new)
    code = ("import flor; df = flor.replay('half', yes=True); "
            "import json; print(json.dumps(df.to_dict('records')))")
    proc = subprocess.run([FLOR[0], "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    frame = json.loads(proc.stdout.strip().splitlines()[-1])
    (run,) = run_ids(repo).values()
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["mode"] == "skip" and rp["restored"] == 0
    expected = values(small_reference(tmp_path, ["half"], new, NO_CKPT, "1.0"), ["half"])
    assert values(note, ["half"], rp["rp"]) == expected
    assert [row["half"] for row in frame] == [v for _, _, v in expected]


def test_missing_checkpoint_objects_fall_back_to_exact_re_execution(tmp_path: Path) -> None:
    repo = small_repo(tmp_path)
    (repo / "train.py").write_text(NEW)
    assert (repo / ".git" / "flor" / "objects").is_dir()
    shutil.rmtree(repo / ".git" / "flor" / "objects")
    plan = flor(repo, "replay", "half", "--dry-run").stdout
    assert "checkpoint(s) missing: re-executed instead" in plan
    flor(repo, "replay", "half", "--yes")
    (run,) = run_ids(repo).values()
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["restored"] == 0
    expected = small_reference(tmp_path, ["half"], NEW, OLD, "1.0")
    assert values(note, ["half"], rp["rp"]) == values(expected, ["half"])


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    repo = small_repo(tmp_path)
    (repo / "train.py").write_text(NEW)
    bad_input(repo, "nope", "--yes",
              expect="unknown name 'nope': train.py logs start, loss, sq, val, half, final, total")
    bad_input(repo, "half", "--yes", "--where", "scale <<< 1", expect="--where")
    bad_input(repo, "half", "--yes", "--where", "scale > 100", expect="no runs match")
    nothing_to_do(repo, "val")
    bad_input(repo, "half", "--yes", "--rev", "no-such-rev", expect="--rev no-such-rev")
    bad_input(repo, "half", expect="pass --yes")  # no terminal to ask on
    # no place for the statement in the old code: the run is skipped, with the reason
    (repo / "train.py").write_text(NEW.replace('flor.log("half", state["w"] / 2)',
                                               'flor.log("half", undefined_thing / 2)'))
    bad_input(repo, "half", "--yes", expect="none of the selected runs can be replayed")
    plan = flor(repo, "replay", "half", "--dry-run", check=False).stdout
    assert "no place for 'half'" in plan and "undefined_thing" in plan


def test_rev_takes_statements_from_a_commit_and_diff_shows_them(tmp_path: Path) -> None:
    repo = small_repo(tmp_path)
    (repo / "train.py").write_text(NEW)
    git(repo, "commit", "-qam", "hindsight")
    (repo / "train.py").write_text(OLD)  # the working tree no longer logs half
    bad_input(repo, "half", "--dry-run", expect="unknown name 'half'")
    out = flor(repo, "replay", "half", "--rev", "HEAD", "--dry-run", "--diff").stdout
    assert '+        flor.log("half", state["w"] / 2)' in out
    assert_clean(repo)


MAIN_GUARDED = '''import os
import sys

import flor
from helper import step_value


class Box:  # defined in __main__, pickled by value into the checkpoint
    def __init__(self):
        self.w = 0.0


def main():
    box = Box()
    with flor.checkpointing(box=box):
        for epoch in flor.loop("epoch", range(3)):
            for step in flor.loop("step", range(2)):
                box.w += step_value(epoch, step)
            flor.log("w", box.w)
    print("done", sys.argv[1:])
    sys.exit(int(os.environ.get("EXIT_STATUS", 0)))


if __name__ == "__main__":
    main()
'''


def test_the_replayed_script_runs_as_python_runs_it(tmp_path: Path) -> None:
    """``__main__``, sibling imports, argv, stdout and ``sys.exit`` statuses, as recorded."""
    helper = "def step_value(epoch, step):\n    return epoch + step / 10\n"
    repo = make_repo(tmp_path / "repo", files={"train.py": MAIN_GUARDED, "helper.py": helper})
    flor(repo, "run", "train.py", "extra-arg")
    (run,) = [row["run"] for row in flor_json(repo, "log")]
    (repo / "train.py").write_text(MAIN_GUARDED.replace(
        '            flor.log("w", box.w)\n',
        '            flor.log("w", box.w)\n            flor.log("w2", box.w * 2)\n'))
    flor(repo, "replay", "w2", "--yes")
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["mode"] == "skip" and rp["restored"] == 3
    assert [v for _, _, v in values(note, ["w2"], rp["rp"])] == [
        2 * v for _, _, v in values(note, ["w"])]
    # a script that ends with a non-zero status fails its replay, and appends nothing
    (repo / "train.py").write_text(MAIN_GUARDED.replace(
        '            flor.log("w", box.w)\n',
        '            flor.log("w", box.w)\n            flor.log("w3", box.w * 3)\n'))
    proc = flor(repo, "replay", "w3", "--yes", check=False, env={"EXIT_STATUS": "3"})
    assert proc.returncode == 1 and "exited 3: done ['extra-arg']" in proc.stderr, proc.stderr
    assert len(replays(repo, run)) == 1
    assert_clean(repo)


PREPARED = '''import random

import flor

random.seed(0)
scale = flor.arg("scale", 1.0)
table = []
for i in flor.loop("prep", range(5)):  # before the checkpointing block: not the main loop
    table.append(random.random())
flor.log("table_sum", sum(table))
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(4)):
            state["w"] += scale * table[step] * random.random()
            flor.log("loss", state["w"])
        flor.log("val", state["w"] * 2)
for k in flor.loop("eval", range(2)):  # after the main loop: suffix
    flor.log("ev", state["w"] + k)
'''
PREPARED_NEW = after(PREPARED, ('flor.log("table_sum", sum(table))', 'flor.log("p2", sum(table) * 2)'),
                     *SQ_AND_HALF, ('flor.log("ev", state["w"] + k)', 'flor.log("ev2", state["w"] + 2 * k)'))


def test_loops_before_the_checkpointing_block_and_after_the_main_loop(tmp_path: Path) -> None:
    """Only the block's loop is the main loop, in recording and in every replay mode."""
    repo = make_repo(tmp_path / "repo", files={"train.py": PREPARED})
    flor(repo, "run", "train.py", "--kwargs", "scale=0.5")
    (run,) = [row["run"] for row in flor_json(repo, "log")]
    (repo / "train.py").write_text(PREPARED_NEW)
    names = ["p2", "sq", "half", "ev2"]
    ref = reference(tmp_path / "ref", transplant(names, PREPARED_NEW, PREPARED), ["scale=0.5"])
    (row,) = json.loads(flor(repo, "replay", "half", "--dry-run", "--format", "json").stdout)
    assert row["epochs"] == 3 and row["mode"] == "skip"
    for name, workers, mode in (("p2", "1", "prefix"), ("half", "1", "skip"),
                                ("sq", "2", "nested"), ("ev2", "1", "skip")):
        flor(repo, "replay", name, "--yes", "--workers", workers)
        assert replays(repo, run)[-1]["mode"] == mode
    expected = finished(ref, tmp_path / "ref")
    note = show(repo, run)
    for rp in note["replays"]:
        (name,) = rp["names"]
        assert values(note, [name], rp["rp"]) == values(expected, [name]), name
        assert values(note, [name], rp["rp"])
    assert rp["restored"] == 3  # ev2: every nested loop skipped
    assert_clean(repo)


SWEEP = '''import random

import flor

random.seed(0)
for lr in flor.loop("lr", [0.1, 0.2]):  # a sweep around the block: one main loop per block
    state = {"w": 0.0}
    with flor.checkpointing(state=state):
        for epoch in flor.loop("epoch", range(3)):
            for step in flor.loop("step", range(4)):
                state["w"] += lr * random.random()
                flor.log("loss", state["w"])
            flor.log("val", state["w"] * 2)
'''


@pytest.mark.parametrize("sweep", ['flor.loop("lr", [0.1, 0.2])', "[0.1, 0.2]"])
def test_a_sweep_around_the_checkpointing_block_replays_exactly(tmp_path: Path,
                                                                 sweep: str) -> None:
    """With a plain ``for``, both blocks have the same loop contexts: checkpoints are told
    apart by their block, or the first block would be restored from the second's."""
    old = SWEEP.replace('flor.loop("lr", [0.1, 0.2])', sweep)
    repo = make_repo(tmp_path / "repo", files={"train.py": old})
    flor(repo, "run", "train.py")
    (run,) = [row["run"] for row in flor_json(repo, "log")]
    new = after(old, ('state = {"w": 0.0}', 'flor.log("w0", state["w"] + lr)'), *SQ_AND_HALF)
    (repo / "train.py").write_text(new)
    ref = reference(tmp_path / "ref", transplant(["w0", "sq", "half"], new, old), [])
    flor(repo, "replay", "half", "--yes")
    flor(repo, "replay", "sq", "--yes", "--workers", "2")
    flor(repo, "replay", "w0", "--yes")  # before each block's main loop: not a prefix stop
    expected, note = finished(ref, tmp_path / "ref"), show(repo, run)
    assert [rp["mode"] for rp in note["replays"]] == ["skip", "nested", "skip"]
    for rp in note["replays"]:
        (name,) = rp["names"]
        assert values(note, [name], rp["rp"]) == values(expected, [name]) != []
    assert_clean(repo)


def test_checkpoints_recorded_without_a_block_number_are_used_only_when_unambiguous() -> None:
    from flor_cli.runtime.replay_mode import _unambiguous
    from flor_cli.storage.notes import loop_key

    legacy = [{"c": {"epoch": e}, "i": 0, "tag": n} for n, e in enumerate([0, 1, 0])]
    numbered = [{"b": b, "c": {"epoch": 0}, "i": 0} for b in (0, 1)]
    assert list(_unambiguous(legacy)) == [loop_key(0, {"epoch": 1}, 0)]
    assert list(_unambiguous(numbered)) == [loop_key(0, {"epoch": 0}, 0),
                                            loop_key(1, {"epoch": 0}, 0)]


# -- exactness: everything a skipped nested loop leaves behind ----------------------------

EXACT = FIXTURES / "exactness"
EXACT_NAMES = ["grad_norm", "grad_none", "last_loss", "mean_loss", "steps", "running",
               "training", "val", "best"]


def test_statements_reading_what_the_nested_loop_left_replay_exactly(tmp_path: Path) -> None:
    """Gradients (None and zeros), eval() inside the loop, the last loss, a list of
    losses, a counter, a dict of averages, a global read in a called function: at module
    scope (train.py) and inside ``def main()`` (main.py), skipped and verified, equal to a
    full run of v2; with a captured value deleted from the store, re-executed, still equal."""
    common = {"common.py": (EXACT / "common.py").read_text()}
    scripts = {s: {2: (EXACT / f"{s}.py").read_text()} for s in ("train", "main")}
    for versions in scripts.values():
        versions[1] = "".join(line for line in versions[2].splitlines(keepends=True)
                              if "# hindsight" not in line)
    procs = {s: reference(tmp_path / f"ref-{s}", versions[2], [], common)
             for s, versions in scripts.items()}
    repo = make_repo(tmp_path / "repo", files={**common,
                                               **{f"{s}.py": v[1] for s, v in scripts.items()}})
    for s in scripts:
        flor(repo, "run", f"{s}.py")
    runs = {row["script"].removesuffix(".py"): row["run"] for row in flor_json(repo, "log")}
    for s, versions in scripts.items():
        (repo / f"{s}.py").write_text(versions[2])
    git(repo, "commit", "-qam", "v2: hindsight statements")
    plan = json.loads(flor(repo, "replay", ",".join(EXACT_NAMES), "--dry-run",
                           "--format", "json").stdout)
    assert [(row["mode"], row["note"]) for row in plan] == [("skip", "")] * 2
    flor(repo, "replay", ",".join(EXACT_NAMES), "--yes")
    expected = {s: finished(procs[s], tmp_path / f"ref-{s}") for s in scripts}
    for s, run in runs.items():
        note = show(repo, run)
        (rp,) = note["replays"]
        assert rp["mode"] == "skip" and rp["restored"] >= 2  # first and last: always
        assert rp["verify"]["ok"] and rp["verify"]["epochs"] in ([1, None], [0, None])
        assert rp["verify"]["compared"] > 0
        for name in EXACT_NAMES:
            assert values(note, [name], rp["rp"]) == values(expected[s], [name]) != [], (s, name)

    # delete the frame part of the last epoch's checkpoint: that loop re-executes, exactly
    run = runs["train"]
    restored = show(repo, run)["replays"][0]["restored"]
    (ckpt,) = [r for r in show(repo, run)["records"]
               if r.get("t") == "ckpt" and r["c"] == {"epoch": 2}]
    sha = ckpt["objs"]["__frame__"]["sha"]
    (repo / ".git" / "flor" / "objects" / sha[:2] / sha[2:]).unlink()
    again = ["last_loss", "mean_loss", "best"]
    (row,) = json.loads(flor(repo, "replay", ",".join(again), "--where", f"run = '{run}'",
                             "--dry-run", "--format", "json").stdout)
    assert row["mode"] == "skip" and "1 checkpoint(s) missing" in row["note"]
    flor(repo, "replay", ",".join(again), "--where", f"run = '{run}'", "--yes", "--no-verify")
    note = show(repo, run)
    rp = note["replays"][-1]
    assert rp["restored"] == restored - 1 and "verify" not in rp
    for name in again:
        assert values(note, [name], rp["rp"]) == values(expected["train"], [name]), name
    assert_clean(repo)


def record_then_edit(tmp_path: Path, old: str, new: str, files: dict | None = None
                     ) -> tuple[Path, str]:
    """A repository with one run of ``old``, then ``new`` in the working tree."""
    repo = make_repo(tmp_path / "repo", files={"train.py": old, **(files or {})})
    flor(repo, "run", "train.py")
    (run,) = [row["run"] for row in flor_json(repo, "log")]
    (repo / "train.py").write_text(new)
    return repo, run


def dry_run(repo: Path, name: str) -> dict:
    (row,) = json.loads(flor(repo, "replay", name, "--dry-run", "--format", "json").stdout)
    return row


STEPPING = '''import flor
import helper

state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(4)):
            state["w"] += step
            LINE
        flor.log("val", state["w"])
'''
HELPER = {"helper.py": "count = 0\n\n\ndef bump():\n    global count\n    count += 1\n"}
UNPICKLABLE = STEPPING.replace("LINE", "pending = (i for i in range(step))  # cannot be pickled")
BUMPING = STEPPING.replace("LINE", "helper.bump()  # state in another module: not captured")


def test_a_statement_reading_what_checkpoints_lack_re_executes_and_the_plan_says_why(
        tmp_path: Path) -> None:
    new = after(UNPICKLABLE, ('flor.log("val", state["w"])', 'flor.log("left", sum(pending))'),
                ('flor.log("val", state["w"])', 'flor.log("val2", state["w"] * 2)'))
    repo, run = record_then_edit(tmp_path, UNPICKLABLE, new, HELPER)
    (ckpt, *_) = [r for r in show(repo, run)["records"] if r.get("t") == "ckpt"]
    assert ckpt["nc"] == ["pending"] and "step" in ckpt["fx"]
    assert (dry_run(repo, "val2")["mode"], dry_run(repo, "val2")["note"]) == ("skip", "")
    row = dry_run(repo, "left")
    assert row["mode"] == "nested" and row["note"] == (
        "reads pending, which the checkpoints do not hold: nested loops re-executed")
    flor(repo, "replay", "left", "--yes")
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["mode"] == "nested" and "pending" in rp["why"]
    assert [v for _, _, v in values(note, ["left"], rp["rp"])] == [3, 3, 3]




def test_verification_catches_what_capture_missed_and_re_executes(tmp_path: Path) -> None:
    new = after(BUMPING, ('flor.log("val", state["w"])', 'flor.log("bumps", helper.count)'))
    repo, run = record_then_edit(tmp_path, BUMPING, new, HELPER)
    assert dry_run(repo, "bumps")["mode"] == "skip"
    proc = flor(repo, "replay", "bumps", "--yes")
    assert "verification of run" in proc.stderr and "'bumps'" in proc.stderr, proc.stderr
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["mode"] == "nested" and rp["verify"]["ok"] is False
    assert "'bumps'" in rp["verify"]["diverged"] and "'bumps'" in rp["why"]
    assert [v for _, _, v in values(note, ["bumps"], rp["rp"])] == [4, 8, 12]
    assert_clean(repo)


NO_NESTED = '''import flor

state = {"w": 0.0}
for i in flor.loop("prep", range(2)):  # an outermost loop before the block
    state["w"] += 1
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):  # the main loop, with no nested loop
        state["w"] += 0.5
        flor.log("w", state["w"])
'''


def test_a_prefix_statement_replays_when_the_main_loop_has_no_nested_loop(
        tmp_path: Path) -> None:
    new = NO_NESTED.replace("with flor.checkpointing", 'flor.log("w0", state["w"])\nwith '
                            "flor.checkpointing")
    repo, run = record_then_edit(tmp_path, NO_NESTED, new)
    row = dry_run(repo, "w0")
    assert row["mode"] == "prefix" and row["epochs"] == 3
    flor(repo, "replay", "w0", "--yes")
    note = show(repo, run)
    (rp,) = note["replays"]
    assert [v for _, _, v in values(note, ["w0"], rp["rp"])] == [2.0]


def test_estimates_count_interpreter_start_imports_and_the_measured_fixed_cost(
        tmp_path: Path) -> None:
    """A plain ``python train.py`` run's prefix starts when its process did (here, half a
    second before flor is imported); a replay records what it cost besides its workers,
    and the next plan's estimate adds that."""
    old = "import time\ntime.sleep(0.5)  # slow imports\n" + NO_NESTED
    repo = make_repo(tmp_path / "repo", files={"train.py": old})
    subprocess.run([FLOR[0], "train.py"], cwd=repo, check=True, capture_output=True)
    (run,) = [row["run"] for row in flor_json(repo, "log")]
    (prefix,) = [r["sec"] for r in show(repo, run)["records"]
                 if r.get("t") == "time" and r.get("k") == "prefix"][-1:]
    assert prefix >= 0.5
    (repo / "train.py").write_text(old.replace('flor.log("w", state["w"])',
                                               'flor.log("w", state["w"])\n        '
                                               'flor.log("w2", state["w"] * 2)'))
    first = dry_run(repo, "w2")["est_s"]
    flor(repo, "replay", "w2", "--yes")
    (rp,) = replays(repo, run)
    assert rp["fixed"] > 0 and rp["fixed"] < rp["end"] - rp["start"]
    again = json.loads(flor(repo, "replay", "w2", "--where", f"run = '{run}'", "--dry-run",
                            "--format", "json").stdout)[0]["est_s"]
    assert first >= prefix and again == pytest.approx(first - 1.0 + rp["fixed"], abs=0.11)


def test_the_transplanted_script_never_goes_through_a_symbolic_link(tmp_path: Path) -> None:
    """An old tree holding a symbolic link at the script's path (or on the way to it)
    must not make replay write outside its worktree: the link is replaced, or the run
    fails alone, and the file it points to is untouched."""
    from flor_cli.services.sandbox import OutsideTree, write_script

    outside = tmp_path / "outside.py"
    outside.write_text("precious\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "train.py").symlink_to(outside)
    write_script(tree, "train.py", "new\n")
    assert outside.read_text() == "precious\n"
    assert not (tree / "train.py").is_symlink() and (tree / "train.py").read_text() == "new\n"
    (tree / "linked").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(OutsideTree, match="symbolic link"):
        write_script(tree, "linked/outside.py", "new\n")
    assert outside.read_text() == "precious\n"
    write_script(tree, "sub/train.py", "inside\n")
    assert (tree / "sub" / "train.py").read_text() == "inside\n"


# the first checkpoint's cost is known before epoch 1 ends: the cheap loop is thinned
THINNED = after(BUMPING, ('flor.log("val", state["w"])', '__import__("time").sleep(0.2)'))


@pytest.mark.parametrize("where, epochs, expected", [
    ("suffix", [2, None], [12]), ("start", [0, None], [0, 4, 8])])
def test_verification_checks_a_restore_when_the_epoch_before_the_last_is_thinned(
        tmp_path: Path, where: str, epochs: list, expected: list) -> None:
    """Cheap nested loops thin the checkpoints (epochs 0 and 2 of 3 kept). A checking
    worker that re-executed only epoch 1 (which the restoring worker re-executes too)
    compared nothing that a restore changed and called the skipped run ok, with
    helper's count wrong. It now re-executes from the last checkpointed epoch (the one
    before it, for a statement at an epoch's start, whose next epoch shows the restore)."""
    statement = 'flor.log("bumps", helper.count)'
    new = (THINNED + statement + "\n" if where == "suffix" else
           THINNED.replace("        for step in", f"        {statement}\n        for step in"))
    repo, run = record_then_edit(tmp_path, THINNED, new, HELPER)
    held = [r["c"]["epoch"] for r in show(repo, run)["records"] if r.get("t") == "ckpt"]
    assert held == [0, 2]
    proc = flor(repo, "replay", "bumps", "--yes")
    assert "'bumps'" in proc.stderr, proc.stderr
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["verify"]["epochs"] == epochs and rp["verify"]["ok"] is False
    assert rp["mode"] == "nested" and [v for *_, v in values(note, ["bumps"], rp["rp"])] == expected


def test_a_verification_that_compares_nothing_is_no_verification(tmp_path: Path) -> None:
    """A statement in a function the script calls in epoch 1 only: the checking worker
    (epoch 2 and the suffix) logs none of it, so nothing was compared, yet the restoring
    worker's value came after restores (0 where a full run logs 8). The header must not
    say ok: the run re-executes, and stderr says so."""
    old = BUMPING.replace("state = {", "def report():\n    pass\n\n\nstate = {").replace(
        '        flor.log("val", state["w"])\n',
        '        flor.log("val", state["w"])\n        if epoch == 1:\n            report()\n')
    new = old.replace("    pass\n", '    flor.log("mid", helper.count)\n    pass\n')
    repo, run = record_then_edit(tmp_path, old, new, HELPER)
    proc = flor(repo, "replay", "mid", "--yes")
    assert "verification of run" in proc.stderr and "compared nothing" in proc.stderr, proc.stderr
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["verify"] == {"epochs": [2, None], "ok": False, "compared": 0,
                            "unchecked": ["mid"]}
    assert rp["mode"] == "nested" and "compared nothing" in rp["why"]
    assert [v for *_, v in values(note, ["mid"], rp["rp"])] == [8]


def test_values_logged_before_any_restore_need_no_check(tmp_path: Path) -> None:
    """A prefix statement beside an epoch one: the prefix value comes before anything is
    restored, so the checking worker need not (and cannot) compare it; the run skips."""
    old = STEPPING.replace("LINE", "pass")
    new = after(old, ('state = {"w": 0.0}', 'flor.log("w0", state["w"])'),
                ('flor.log("val", state["w"])', 'flor.log("val2", state["w"] * 2)'))
    repo, run = record_then_edit(tmp_path, old, new, HELPER)
    flor(repo, "replay", "w0,val2", "--yes")
    (rp,) = show(repo, run)["replays"]
    assert rp["mode"] == "skip" and rp["verify"]["ok"] and rp["verify"]["compared"] == 1


def test_nested_workers_after_the_first_are_verified_where_they_fast_forward(
        tmp_path: Path) -> None:
    """--workers 2: the second worker restores epoch 0 to start at epoch 1, which leaves
    helper's count (another module's state) at 0: its values were 1..4 where a full run
    logs 5..8, unverified. A checking worker re-executes epochs 0 and 1 and compares;
    the difference makes one worker re-execute every epoch."""
    new = after(BUMPING, ("helper.bump()", 'flor.log("c", helper.count)'))
    repo, run = record_then_edit(tmp_path, BUMPING, new, HELPER)
    proc = flor(repo, "replay", "c", "--yes", "--workers", "2")
    assert "verification of run" in proc.stderr and "'c'" in proc.stderr, proc.stderr
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["verify"]["epochs"] == [0, 2] and rp["verify"]["ok"] is False
    assert rp["mode"] == "nested" and rp["workers"] == 1
    assert sorted(v for *_, v in values(note, ["c"], rp["rp"])) == list(range(1, 13))


def test_nested_workers_fast_forward_only_over_what_the_checkpoints_hold(
        tmp_path: Path) -> None:
    """A nested statement reads what the previous epoch's loop left and no checkpoint
    holds (a generator): the second worker would see it as the prefix left it. The plan
    says so and one worker re-executes every epoch."""
    old = UNPICKLABLE.replace('state = {"w": 0.0}', 'state = {"w": 0.0}\npending = None')
    new = old.replace("            pending = (i", '            flor.log("fresh", pending is None)\n'
                      "            pending = (i")
    repo, run = record_then_edit(tmp_path, old, new, HELPER)
    (row,) = json.loads(flor(repo, "replay", "fresh", "--dry-run", "--workers", "2",
                             "--format", "json").stdout)
    assert row["mode"] == "nested" and row["note"] == (
        "reads pending, which the checkpoints do not hold: one worker re-executes every epoch")
    flor(repo, "replay", "fresh", "--yes", "--workers", "2")
    note = show(repo, run)
    (rp,) = note["replays"]
    assert rp["workers"] == 1 and "verify" not in rp
    assert [v for *_, v in values(note, ["fresh"], rp["rp"])].count(True) == 1


def test_a_thinned_loop_re_executed_after_a_restore_reads_only_what_is_held(
        tmp_path: Path) -> None:
    """Epoch 1 is not checkpointed (thinned): skipping epoch 0 and re-executing epoch 1
    runs its loop on what the restore left, which lacks the generator the loop reads
    before binding it (state 26 after epoch 1 where a full run has 27). The plan says
    so and re-executes."""
    old = THINNED.replace('state = {"w": 0.0}', 'state = {"w": 0.0}\ngen = None').replace(
        "            helper.bump()  # state in another module: not captured\n",
        "            state[\"w\"] += 1 if gen is None else 2\n"
        "            gen = (i for i in range(step))  # cannot be pickled\n")
    new = after(old, ('flor.log("val", state["w"])', 'flor.log("w2", state["w"])'))
    repo, run = record_then_edit(tmp_path, old, new, HELPER)
    held = [r["c"]["epoch"] for r in show(repo, run)["records"] if r.get("t") == "ckpt"]
    assert held == [0, 2]
    row = dry_run(repo, "w2")
    assert row["mode"] == "nested" and row["note"].startswith("reads gen,")
    flor(repo, "replay", "w2", "--yes", "--no-verify")
    note = show(repo, run)
    (rp,) = note["replays"]
    assert [v for *_, v in values(note, ["w2"], rp["rp"])] == [13.0, 27.0, 41.0]
