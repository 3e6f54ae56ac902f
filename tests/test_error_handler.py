"""Errors in one place: a user error is one line and exit 2, Ctrl-C exits 130, and
anything else (a bug, a failing git command) exits 3 with one line pointing to a log
file that holds the traceback and the versions. In-process: no real process is needed."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from flor_cli import main
from flor_cli.errors import UserError
from flor_cli.storage import cache
from flor_cli.storage.git import GitError


def run_flor(monkeypatch, cwd: Path, *args: str) -> int:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr("sys.argv", ["flor", *args])
    with pytest.raises(SystemExit) as raised:
        main.main(list(args))
    return raised.value.code


def failing(error: BaseException):
    def connect(*_a, **_k):
        raise error
    return connect


def logged(stderr: str) -> Path:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    match = re.search(r"details in (\S+\.log)$", lines[0])
    assert match, lines[0]
    return Path(match.group(1))


def test_a_failing_git_command_is_a_bug_exit_3_with_a_log(repo: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cache, "connect", failing(
        GitError(["git", "update-ref", "refs/x"], 128, "fatal: cannot lock ref 'refs/x'\n")))
    assert run_flor(monkeypatch, repo, "log") == 3
    err = capsys.readouterr().err
    assert err.startswith("flor: unexpected error (a bug in flor): GitError: git update-ref")
    path = logged(err)
    assert path.parent == (repo / ".git" / "flor" / "logs").resolve()
    log = path.read_text()
    for fragment in ("Traceback", "failed command: git update-ref refs/x", "exit code: 128",
                     "fatal: cannot lock ref", "flor: ", "python: ", "git: git version",
                     "command: flor log"):
        assert fragment in log, fragment


def test_a_bug_outside_a_repository_logs_to_the_temporary_directory(
        tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(main, "_click_main", failing(RuntimeError("boom\nsecond line")))
    assert run_flor(monkeypatch, tmp_path, "log") == 3
    path = logged(capsys.readouterr().err)
    assert path.parent == tmp_path / "tmp" / "flor-logs"
    assert "RuntimeError: boom" in path.read_text()


def test_ctrl_c_exits_130(repo: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cache, "connect", failing(KeyboardInterrupt()))
    assert run_flor(monkeypatch, repo, "log") == 130
    assert capsys.readouterr().err.strip() == "flor: interrupted"  # click echoes a newline first


def test_a_user_error_is_one_line_and_exit_2(repo: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cache, "connect", failing(UserError("something you can fix")))
    assert run_flor(monkeypatch, repo, "log") == 2
    assert capsys.readouterr().err == "flor: something you can fix\n"
    assert not (repo / ".git" / "flor" / "logs").exists()


@pytest.mark.parametrize("args", [["log", "--pivot", "step_loss"], ["show", "latest"],
                                  ["query", "SELECT * FROM logs", "--format", "csv"]])
def test_output_cut_short_by_its_reader_exits_141_quietly(tmp_path: Path, args) -> None:
    """``flor log | head -1``: click turned the broken pipe into exit 1 (nothing on
    stderr); a program killed by SIGPIPE, as git is there, reports 141 to the shell."""
    import subprocess

    from conftest import FLOR, make_repo
    from synthetic import record_run

    repo = make_repo(tmp_path / "repo", files={"train.py": "print(1)\n"})
    record_run(repo, epochs=4, steps=5000)  # far more than a pipe's 64 KiB
    proc = subprocess.Popen([*FLOR, *args], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=60), err) == (141, "")


def test_a_broken_pipe_that_is_not_stdout_is_a_bug(repo: Path, monkeypatch, capsys) -> None:
    """A worker's pipe breaking is no reader going away: never a quiet exit."""
    monkeypatch.setattr(cache, "connect", failing(BrokenPipeError(32, "Broken pipe")))
    assert run_flor(monkeypatch, repo, "log") == 3
    assert "a bug in flor" in capsys.readouterr().err
