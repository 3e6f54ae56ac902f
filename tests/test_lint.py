"""`flor lint`: each rule on a script that breaks it, and silence on scripts that don't."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import FIXTURES, cli, flor, git, make_repo
from flor_cli.services.lint import lint_source

CHECKPOINTED = """\
import flor

net = object()
flor.log("loss", 0.0)
with flor.checkpointing(model=net):
    for epoch in flor.loop("epoch", range(3)):
        flor.log("lr", 0.1)
        for step in flor.loop("step", range(2)):
            flor.log("loss", step)
        flor.log("lr", 0.1)
        flor.log("val", epoch)
flor.log("val", 1)
"""

UNNAMED = """\
import flor
from flor import log as record

name = "lr"
lr = flor.arg(name, 0.1)
for i in flor.loop(name="i" "dx", iterable=range(2)):
    flor.log(f"loss_{i}", i)
    record(name, i)
    flor.log("fine" "too", i)
"""

UNGUARDED = """\
import flor


def train_epoch(n):
    for step in flor.loop("step", range(n)):
        flor.log("loss", step)


def main():
    for epoch in flor.loop("epoch", range(3)):
        train_epoch(2)
    with flor.checkpointing(model=None):
        for epoch in flor.loop("epoch2", range(3)):
            train_epoch(2)


main()
"""


def codes(source: str) -> list[tuple[int, int, str]]:
    return [(f.line, f.col, f.code) for f in lint_source(textwrap.dedent(source), "s.py")]


def test_fl001_names_that_are_not_string_literals() -> None:
    found = lint_source(UNNAMED, "s.py")
    assert [(f.line, f.col, f.code) for f in found] == [
        (5, 6, "FL001"), (7, 5, "FL001"), (8, 5, "FL001")]
    assert found[0].message.startswith("flor.arg name is not a string literal")
    assert found[2].message.startswith("flor.log name")  # `from flor import log as record`


def test_fl002_one_name_at_different_levels() -> None:
    found = lint_source(CHECKPOINTED, "s.py")
    assert [(f.line, f.code) for f in found] == [(9, "FL002"), (12, "FL002")]
    assert found[0].message == "'loss' is logged in a nested loop here but before the main " \
                               "loop at line 4"
    assert found[1].message == "'val' is logged after the main loop here but in the main " \
                               "loop at line 11"
    without_checkpointing = """
        import flor
        for epoch in flor.loop("epoch", range(3)):
            flor.log("val", epoch)
        flor.log("val", 1)
    """
    assert codes(without_checkpointing) == [(5, 1, "FL002")]


def test_fl003_nested_loop_outside_checkpointing_through_a_called_function() -> None:
    found = lint_source(UNGUARDED, "s.py")
    assert [(f.line, f.col, f.code) for f in found] == [(10, 5, "FL003")]
    assert "flor.loop 'epoch' has a nested flor.loop" in found[0].message


def test_checkpointed_nested_loops_and_the_fixtures_are_clean() -> None:
    assert codes("""
        import flor
        with flor.checkpointing(model=None):
            for epoch in flor.loop("epoch", range(3)):
                for step in flor.loop("step", range(2)):
                    flor.log("loss", step)
                flor.log("val", epoch)
        flor.log("acc", 1)
    """) == []
    for name in ("train.py", "sklearn_sweep.py"):
        assert lint_source((FIXTURES / "scripts" / name).read_text(), name) == []


def test_cli_output_exit_status_and_skipped_files(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(UNNAMED)
    (tmp_path / "mixed.py").write_text(CHECKPOINTED)
    (tmp_path / "other.py").write_text("x = log(name)\n")  # no flor import: not flor's
    (tmp_path / "broken.py").write_text("import flor\nfor x in\n")
    proc = cli(tmp_path, "lint", "mixed.py", "other.py", "bad.py", "broken.py", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == [  # files in the order given
        "mixed.py:9:13:", "mixed.py:12:1:", "bad.py:5:6:", "bad.py:7:5:", "bad.py:8:5:",
        "broken.py:2:9:"]
    assert lines[-1] == "broken.py:2:9: FL000 syntax error: invalid syntax"
    assert proc.stderr == ""
    clean = cli(tmp_path, "lint", "other.py")
    assert (clean.stdout, clean.stderr) == ("", "")


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(UNNAMED)
    proc = cli(tmp_path, "lint", "bad.py", "missing.py", check=False)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "flor: no such file: missing.py\n"


def test_default_scripts_are_the_tracked_files_that_import_flor(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={
        "pkg/train.py": UNGUARDED, "util.py": "def f(name):\n    return log(name)\n",
        "notes.txt": "import flor\n"})
    (repo / "untracked.py").write_text(UNNAMED)
    (repo / "pkg" / "sub").mkdir()
    proc = flor(repo / "pkg" / "sub", "lint", check=False)
    assert proc.returncode == 1
    assert [line.split(" ")[:2] for line in proc.stdout.splitlines()] == [
        ["../train.py:10:5:", "FL003"]]
    git(repo, "rm", "-q", "pkg/train.py")
    assert cli(repo, "lint").stdout == ""


def test_pre_commit_hook_gates_on_flor_lint(tmp_path: Path) -> None:
    """Run the hook as pre-commit does: its entry with the staged Python files appended;
    a commit passes only if it exits 0."""
    text = (FIXTURES.parent / ".pre-commit-hooks.yaml").read_text()
    hook = dict(line.strip().lstrip("- ").split(": ", 1) for line in text.splitlines()
                if ": " in line and not line.startswith("#"))
    assert (hook["id"], hook["language"], hook["types"]) == ("flor-lint", "python", "[python]")
    program, *args = hook["entry"].split()
    assert program == "flor"  # the console script pyproject.toml installs
    proc = flor(FIXTURES / "scripts", *args, "train.py", "sklearn_sweep.py")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    (tmp_path / "bad.py").write_text(UNNAMED)
    proc = flor(tmp_path, *args, "bad.py", check=False)
    assert proc.returncode == 1 and proc.stdout.startswith("bad.py:")
