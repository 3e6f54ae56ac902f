"""The runs table and friends: `flor log`, `--pivot`, `flor check`, `flor show`, `flor diff`,
`flor.dataframe` over one recorded repository, and one value per (run, name) after replays.

Runs are recorded (and replayed) by real processes once per module; read commands run
in-process through click's CliRunner.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import FLOR, flor, git, make_repo

SCRIPT = '''\
import flor

lr = flor.arg("lr", 0.5)
state = {"w": 1.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            state["w"] -= lr * state["w"]
            flor.log("loss", state["w"])
        flor.log("val_acc", round(1 - state["w"], 6))
flor.log("accuracy", round(1 - state["w"], 6))
'''
HINDSIGHT = '        flor.log("val_acc"'  # the new statement goes above this line


def cli(repo: Path, *args: str, ok: bool = True):
    """``flor ARGS`` in-process, from ``repo``."""
    from flor_cli.main import cli as group

    cwd = os.getcwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(group, list(args), catch_exceptions=not ok)
    finally:
        os.chdir(cwd)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def rows(repo: Path, *args: str) -> list[dict]:
    return json.loads(cli(repo, *args, "--json").output)


def with_statement(repo: Path, factor: int) -> None:
    """Commit today's version of the script: it also logs ``w2 = w * factor`` per epoch."""
    path = repo / "train.py"
    text = SCRIPT.replace(HINDSIGHT, f'        flor.log("w2", state["w"] * {factor})\n'
                                     + HINDSIGHT)
    path.write_text(text)
    git(repo, "commit", "-qam", f"log w2 = w * {factor}")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Two runs (lr 0.5, then 0.25); w2 replayed into both with factor 2, then replayed
    again into the first only (``--where``) with factor 3."""
    repo = make_repo(tmp_path_factory.mktemp("table") / "repo", files={"train.py": SCRIPT})
    flor(repo, "run", "train.py")
    flor(repo, "run", "train.py", "--kwargs", "lr=0.25")
    first, second = (r["run"] for r in rows(repo, "log", "--sort", "lr DESC"))
    with_statement(repo, 2)
    flor(repo, "replay", "w2", "--yes")
    with_statement(repo, 3)
    flor(repo, "replay", "w2", "--where", "lr > 0.3", "--yes")
    return repo, first, second


# Each epoch: w *= 1 - lr. lr 0.5: 0.25, 0.0625, 0.015625; lr 0.25: 0.5625, 0.3164.., 0.1779..
W_FIRST = [0.25, 0.0625, 0.015625]
W_SECOND = [(1 - 0.25) ** (2 * e + 2) for e in range(3)]


# -- one value per (run, name) ---------------------------------------------------------


def test_a_later_replay_replaces_the_earlier_one_everywhere(recorded) -> None:
    repo, first, second = recorded
    by_run = {r["run"]: r for r in rows(repo, "log")}
    assert by_run[first]["w2"] == W_FIRST[-1] * 3  # the second replay's last value
    assert by_run[second]["w2"] == W_SECOND[-1] * 2  # only the first replay reached it
    pivot = rows(repo, "log", "--pivot", "w2")
    assert [(r["run"], r["epoch"], r["w2"]) for r in pivot] == \
        [(first, e, w * 3) for e, w in enumerate(W_FIRST)] + \
        [(second, e, w * 2) for e, w in enumerate(W_SECOND)]
    cli(repo, "check", f"w2 = {W_FIRST[-1] * 3}", "--run", first)
    cli(repo, "check", f"w2 = {W_FIRST[0] * 3}", "--run", first, "--agg", "w2=first")
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        import flor

        frame = flor.dataframe("w2")
    finally:
        os.chdir(cwd)
    assert list(frame[frame.run == first].w2) == [w * 3 for w in W_FIRST]
    # the note keeps the history: both replays' values are there
    note = json.loads(cli(repo, "show", first, "--json").output)
    replayed = [r["v"] for r in note["records"] if r.get("n") == "w2"]
    assert sorted(replayed) == sorted([w * 2 for w in W_FIRST] + [w * 3 for w in W_FIRST])
    summary = {s["name"]: s for s in note["summary"]}
    assert summary["w2"]["count"] == 3 and summary["w2"]["max"] == W_FIRST[0] * 3


def test_recorded_values_stay_unless_their_name_is_replayed(recorded) -> None:
    repo, first, _ = recorded
    [row] = rows(repo, "log", "--where", f"run = '{first}'")
    assert (row["val_acc"], row["accuracy"], row["loss"]) == \
        (1 - W_FIRST[-1], 1 - W_FIRST[-1], W_FIRST[-1])


# -- the runs table --------------------------------------------------------------------


def test_runs_table_shows_each_name_last_value_newest_first(recorded) -> None:
    repo, first, second = recorded
    table = rows(repo, "log")
    assert [r["run"] for r in table] == [second, first]
    assert table[1]["val_acc"] == 1 - W_FIRST[-1]  # logged per epoch: its last value
    assert [r["run"] for r in rows(repo, "log", "-n", "1")] == [second]
    assert [r["run"] for r in rows(repo, "log", "--limit", "1")] == [second]
    assert [r["run"] for r in rows(repo, "log", "--sort", "lr DESC", "-n", "1")] == [first]
    pivot = rows(repo, "log", "--pivot", "val_acc", "-n", "1")
    assert {r["run"] for r in pivot} == {second} and len(pivot) == 3


def test_agg_chooses_the_summary_globally_or_per_name(recorded) -> None:
    repo, first, _ = recorded
    [row] = rows(repo, "log", "--agg", "min", "--agg", "loss=max,w2=count", "--where",
                 f"run = '{first}'")
    assert (row["val_acc"], row["loss"], row["w2"]) == (1 - W_FIRST[0], 0.5, 3)  # loss: per step
    [row] = rows(repo, "log", "--agg", "mean", "--where", "val_acc > 0.8")
    assert row["run"] == first and row["val_acc"] == pytest.approx(
        sum(1 - w for w in W_FIRST) / 3)
    high = rows(repo, "log", "--agg", "val_acc=first", "--sort", "val_acc DESC")
    assert [r["val_acc"] for r in high] == [1 - W_FIRST[0], 1 - W_SECOND[0]]
    result = cli(repo, "log", "--agg", "val_acc=median", ok=False)
    assert result.exit_code != 0 and "unknown summary 'median'" in str(result.exception)


def test_where_over_run_level_columns_selects_runs_before_the_pivot(recorded) -> None:
    repo, first, second = recorded
    assert {r["run"] for r in rows(repo, "log", "--pivot", "loss", "--where", "lr < 0.3")} \
        == {second}
    low = rows(repo, "log", "--pivot", "loss", "--where", "loss < 0.02")  # a row-level name
    assert [(r["run"], r["epoch"], r["step"]) for r in low] == [(first, 2, 1)]


def test_output_formats(recorded) -> None:
    repo, first, second = recorded
    tsv = cli(repo, "log", "--tsv", "--columns", "run,lr").output
    assert tsv.splitlines() == ["run\tlr", f"{second}\t0.25", f"{first}\t0.5"]
    nl = cli(repo, "log", "--nl", "--columns", "run", "--columns", "l?").output
    assert [json.loads(line) for line in nl.splitlines()] == \
        [{"run": second, "lr": 0.25}, {"run": first, "lr": 0.5}]
    headless = cli(repo, "log", "--csv", "--no-headers", "--columns", "run").output
    assert headless.splitlines() == [second, first]
    rounded = rows(repo, "log", "--precision", "2", "--columns", "loss")
    assert [r["loss"] for r in rounded] == [0.18, 0.016]
    changed = rows(repo, "log", "--only-changed")
    assert "lr" in changed[0] and "script" not in changed[0] and "status" not in changed[0]
    kept = rows(repo, "log", "--only-changed", "--drop", "l*", "--keep", "status")
    assert "lr" not in kept[0] and "loss" not in kept[0] and kept[0]["status"] == "ok"
    result = cli(repo, "log", "--fmt", "nosuchstyle", ok=False)
    assert result.exit_code == 2 and "unknown style 'nosuchstyle'" in result.output
    result = cli(repo, "log", "--csv", "--json", ok=False)
    assert result.exit_code == 2 and "one output format" in result.output


def test_show_prints_dates_summaries_and_code_and_one_csv_table(recorded) -> None:
    repo, first, _ = recorded
    text = cli(repo, "show", first, "--no-records").output
    assert "== summary ==" in text and "== code ==" in text and "== records ==" not in text
    start = json.loads(cli(repo, "show", first, "--json").output)["header"]["start"]
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) in text
    shadow = json.loads(cli(repo, "show", first, "--json").output)["commit"]
    assert shadow in text
    table = list(csv.reader(io.StringIO(cli(repo, "show", first, "--csv").output)))
    assert table[0] == ["seq", "kind", "name", "value", "context", "replay"]
    assert all(len(row) == 6 for row in table)


def test_diff_puts_args_and_summaries_side_by_side_with_the_code_diff(recorded) -> None:
    repo, first, second = recorded
    table = rows(repo, "diff", first, second)
    by_what = {r["what"]: r for r in table}
    assert (by_what["arg lr"][first], by_what["arg lr"][second], by_what["arg lr"]["changed"]) \
        == (0.5, 0.25, "*")
    assert by_what["last val_acc"][first] == 1 - W_FIRST[-1]
    text = cli(repo, "diff", first, second).output
    assert "(the same code)" in text  # both ran the first version
    base = make_copy(repo, "diffed")
    (base / "train.py").write_text(SCRIPT.replace("0.5", "0.75"))
    flor(base, "run", "train.py")
    text = cli(base, "diff", first, "latest").output
    assert '-lr = flor.arg("lr", 0.5)' in text and '+lr = flor.arg("lr", 0.75)' in text


def make_copy(repo: Path, name: str) -> Path:
    """A copy of the recorded repository, for tests that add to it."""
    import shutil

    target = repo.parent.parent / name
    shutil.copytree(repo, target, symlinks=True)
    return target


# -- terminal: pager and colour --------------------------------------------------------


def test_log_pages_and_colours_on_a_terminal_only(recorded, tmp_path: Path) -> None:
    repo, _, second = recorded
    seen = tmp_path / "pager"
    env = {**os.environ, "PAGER": f"cat > {seen}; echo LESS=$LESS >> {seen}",
           "TERM": "xterm"}
    env.pop("LESS", None)
    env.pop("NO_COLOR", None)
    output = in_terminal([*FLOR, "log"], repo, env)
    paged = seen.read_text()
    assert "\x1b[1m" in paged and second in paged and "LESS=FRX" in paged
    assert "Traceback" not in output
    seen.unlink()
    output = in_terminal([*FLOR, "log"], repo, {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in seen.read_text()
    seen.unlink()
    piped = subprocess.run([*FLOR, "log"], cwd=repo, env=env, capture_output=True, text=True)
    assert piped.returncode == 0 and second in piped.stdout and "\x1b[" not in piped.stdout
    assert not seen.exists()


def in_terminal(cmd: list[str], cwd: Path, env: dict) -> str:
    """Run ``cmd`` with a pseudo-terminal as its stdin/stdout/stderr; what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 10)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(10)
    os.close(leader)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


# -- runs in progress ------------------------------------------------------------------

SLOW = '''\
import os, time
import flor

for epoch in flor.loop("epoch", range(3)):
    flor.log("val_acc", epoch / 10)
    while epoch == 1 and not os.path.exists("go"):
        time.sleep(0.02)
flor.log("accuracy", 1.0)
'''


def wait_for(condition, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_running_runs_show_in_log_pivot_and_watch(recorded) -> None:
    repo, _, _ = recorded
    repo = make_copy(repo, "running")
    (repo / "slow.py").write_text(SLOW)
    proc = subprocess.Popen([*FLOR, "run", "slow.py"], cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        def running() -> dict | None:
            live = [r for r in rows(repo, "log") if r["status"] == "running"]
            return live[0] if live and live[0]["val_acc"] == 0.1 else None

        row = wait_for(running)
        journals = list((repo / ".git" / "flor" / "journals").glob("*.jsonl"))
        assert [j.stem for j in journals] == [row["run"]]  # read, not folded
        pivot = rows(repo, "log", "--pivot", "val_acc", "--where", f"run = '{row['run']}'")
        assert [(r["epoch"], r["val_acc"]) for r in pivot] == [(0, 0.0), (1, 0.1)]
        shown = json.loads(cli(repo, "show", row["run"], "--json").output)
        assert shown["header"]["status"] == "running"
        watch = subprocess.Popen([*FLOR, "watch", "--json", "--interval", "0.1",
                                  "--columns", "run,status,val_acc"],
                                 cwd=repo, stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        (repo / "go").write_text("")
        out, _ = watch.communicate(timeout=30)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    tables = [json.loads(t) for t in out.split("\n\n")]
    mine = [[r for r in t if r["run"] == row["run"]][0] for t in tables]
    assert mine[0]["status"] == "running" and mine[-1]["status"] == "ok"
    assert mine[-1]["val_acc"] == 0.2


# -- run lifecycle ---------------------------------------------------------------------


def test_tags_names_and_annotations(recorded) -> None:
    repo, first, second = recorded
    repo = make_copy(repo, "tagged")
    cli(repo, "tag", first, "best", "v1")
    cli(repo, "tag", first, "-m", "the good one")
    assert json.loads(cli(repo, "show", "best", "--json").output)["header"]["run"] == first
    [row] = rows(repo, "log", "--where", "tags LIKE '%best%'")
    assert (row["run"], row["tags"], row["note"]) == (first, "best v1", "the good one")
    cli(repo, "tag", first, "-d", "v1")
    assert rows(repo, "tag") == [{"tag": "best", "run": first}]
    result = cli(repo, "tag", first, "two words", ok=False)
    assert result.exit_code != 0 and "not a tag" in str(result.exception)
    flor(repo, "run", "--name", "baseline", "train.py", "--name", "for-the-script")
    named = json.loads(cli(repo, "show", "baseline", "--json").output)
    assert named["header"]["argv"] == ["--name", "for-the-script"]  # passed through
    assert rows(repo, "log", "-n", "1")[0]["tags"] == "baseline"
    cli(repo, "check", "lr = 0.5", "--run", "baseline")


def test_rm_hides_survives_pull_undo_and_gc(recorded, tmp_path: Path) -> None:
    repo, first, second = recorded
    a = make_copy(repo, "removing")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(a, "remote", "add", "origin", str(remote))
    git(a, "push", "-q", "-u", "origin", "main")
    flor(a, "push")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(remote), str(b))
    flor(b, "pull")
    assert {r["run"] for r in rows(b, "log")} == {first, second}

    objects = a / ".git" / "flor" / "objects"
    before = sum(1 for _ in objects.glob("??/*"))
    cli(a, "rm", first)
    assert [r["run"] for r in rows(a, "log")] == [second]
    assert [r["run"] for r in rows(a, "rm", "--list")] == [first]
    assert "no run matches" in str(cli(a, "show", first, ok=False).exception)
    flor(a, "pull")  # B still has the run: the removal stays
    assert [r["run"] for r in rows(a, "log")] == [second]
    flor(a, "push")
    flor(b, "pull")  # and reaches B
    assert [r["run"] for r in rows(b, "log")] == [second]

    cli(a, "rm", "--undo", first)
    assert {r["run"] for r in rows(a, "log")} == {first, second}
    cli(a, "rm", first)
    report = cli(a, "gc", "--dry-run").output
    assert sum(1 for _ in objects.glob("??/*")) == before
    report = cli(a, "gc").output
    after = sum(1 for _ in objects.glob("??/*"))
    assert f"freed {before - after} checkpoint object(s)" in report and after < before
    assert f"1 removal(s) final (no undo): {first}" in report
    result = cli(a, "rm", "--undo", first, ok=False)
    assert "cannot be restored" in str(result.exception)
    report = cli(a, "gc", "--keep-last", "1").output
    kept = sum(1 for _ in objects.glob("??/*"))
    assert 0 < kept < after and f"freed {after - kept} checkpoint object(s)" in report


def test_checkpoint_records_are_read_whatever_their_objects_kind(recorded) -> None:
    """The frame effects (kind "frame") and torch modules (kind "module") are checkpoint
    objects like the others: a note holding them is read without a warning."""
    repo, first, _ = recorded
    proc = flor(repo, "show", first, "--json")
    assert "warning" not in proc.stderr, proc.stderr
    ckpts = [r for r in json.loads(proc.stdout)["records"] if r["t"] == "ckpt"]
    assert len(ckpts) == 3 and all("__frame__" in c["objs"] for c in ckpts)
