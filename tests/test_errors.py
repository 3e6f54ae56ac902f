"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing written.

In this process (conftest.cli) except where a script runs: ``flor run`` must be a real
process, since its script writes the error to the real stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import cli, fixture_script, flor, flor_json, git, make_repo


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def journals(repo: Path) -> list[Path]:
    return list((repo / ".git" / "flor" / "journals").glob("*"))


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args", [["log"], ["run", "train.py"], ["query", "SELECT 1"],
                                  ["show", "latest"]])
def test_not_a_git_repository(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    run = flor if args[0] == "run" else cli
    assert_one_line_error(run(tmp_path, *args, check=False), "not a git repository")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """One repository with one run, shared: every case below must leave it as it was."""
    repo = make_repo(tmp_path_factory.mktemp("errors") / "repo",
                     files={"train.py": fixture_script("train.py")})
    flor(repo, "run", "train.py", "--kwargs", "epochs=1", "batches=2")
    return repo


@pytest.mark.parametrize("args, fragment", [
    (["run", "missing.py"], "no such script: missing.py"),
    (["run", "train.py", "--kwargs", "lr"], "expected name=value"),
    (["run", "train.py", "--kwargs", "=3"], "expected name=value"),
    (["run", "train.py", "--kwargs", "epochs=abc"], "epochs=abc: not a valid int"),
    (["run", "train.py", "--kwargs", "lr=fast"], "lr=fast: not a valid float"),
    (["run"], "Missing argument"),
    (["log", "--where", "lr <<< 1"], "--where 'lr <<< 1': near \"<\": syntax error"),
    (["log", "--where", "nosuchcolumn = 1"], "no such column: nosuchcolumn"),
    (["log", "--pivot", "loss", "--where", "epoch ==="], "--where 'epoch ==='"),
    (["log", "--pivot", "nosuchname"], "nothing logged under 'nosuchname'"),
    (["log", "--sort", "(("], "--sort '((': incomplete expression"),
    (["log", "--limit", "-1"], "--limit"),
    (["log", "--bogus"], "--bogus"),
    (["query", "SELEC 1"], "query: near \"SELEC\""),
    (["query", "DELETE FROM runs"], "read-only"),
    (["query", "DROP TABLE logs"], "read-only"),
    (["query", "INSERT INTO args VALUES ('a','b',1)"], "read-only"),
    (["query", "UPDATE runs SET status='x'"], "read-only"),
    (["query", "CREATE TABLE t(x)"], "read-only"),
    (["query", "ATTACH DATABASE '/tmp/x.db' AS x"], "read-only"),
    (["query", "PRAGMA query_only=OFF"], "read-only"),
    (["query", "SELECT 1; DELETE FROM runs"], "query:"),
    (["log", "--where", "1); DELETE FROM runs; --"], "--where '1); DELETE FROM runs; --'"),
    (["show", "nosuchrun"], "no run matches 'nosuchrun'"),
    (["nosuchcommand"], "no such command 'nosuchcommand'"),
])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(recorded: Path, args, fragment) -> None:
    repo = recorded
    before = refs(repo), flor_json(repo, "query", "SELECT * FROM runs")
    proc = (flor if args[:1] == ["run"] and len(args) > 1 else cli)(repo, *args, check=False)
    assert_one_line_error(proc, fragment)
    assert (refs(repo), flor_json(repo, "query", "SELECT * FROM runs")) == before
    assert len(before[1]) == 1 and before[1][0]["status"] == "ok"
    assert journals(repo) == []


def test_failed_cast_leaves_no_shadow_commit_and_no_note(repo: Path) -> None:
    before = refs(repo)
    proc = flor(repo, "run", "train.py", "--kwargs", "epochs=1.5", check=False)
    assert_one_line_error(proc, "epochs=1.5: not a valid int (the default is 3)")
    assert refs(repo) == before
    assert journals(repo) == []


def test_show_latest_without_runs(repo: Path) -> None:
    assert_one_line_error(cli(repo, "show", "latest", check=False), "no runs recorded")


def test_bad_name_in_script_is_the_scripts_own_error(tmp_path: Path, repo: Path) -> None:
    (repo / "bad.py").write_text("import flor\nflor.log('', 1)\n")
    proc = flor(repo, "run", "bad.py", check=False)
    assert proc.returncode == 1
    assert "flor.log: name must be a non-empty string" in proc.stderr


def test_unsupported_checkpoint_store_fails_before_anything_is_written(repo: Path) -> None:
    # any fsspec URL is a store (s3://, gs://: tests/test_store_s3.py); one fsspec
    # does not know is refused before the run starts
    git(repo, "config", "flor.store", "nosuchproto://bucket/flor")
    before = refs(repo)
    proc = flor(repo, "run", "train.py", check=False)
    assert_one_line_error(proc, "unknown storage protocol 'nosuchproto'")
    assert refs(repo) == before and journals(repo) == []
