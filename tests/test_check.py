"""`flor check`: a CI gate over one run's values, and `flor run` as CI runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import FLOR, cli, fixture_script, flor, flor_json, git, make_repo


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """Two runs of the scikit-learn fixture: C=1.0 (accuracy 0.96), then C=0.0001 (0.8).

    The second is run the way CI runs it: CI=true, standard input closed, no terminal.
    """
    repo = make_repo(tmp_path_factory.mktemp("check") / "repo",
                     files={"sweep.py": fixture_script("sklearn_sweep.py")})
    flor(repo, "run", "sweep.py")
    ci = subprocess.run([*FLOR, "run", "sweep.py", "--kwargs", "C=0.0001"], cwd=repo,
                        stdin=subprocess.DEVNULL, capture_output=True, text=True,
                        env={**os.environ, "CI": "true"})
    assert ci.returncode == 0, ci.stderr
    good, bad = flor_json(repo, "log", "--sort", "time, run")
    return repo, good, bad


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def test_run_works_non_interactively(runs) -> None:
    _, good, bad = runs
    assert (good["C"], good["status"]) == (1.0, "ok")
    assert (bad["C"], bad["status"], bad["accuracy"]) == (0.0001, "ok", 0.8)


def test_true_expression_exits_0(runs) -> None:
    repo, good, _ = runs
    proc = cli(repo, "check", "accuracy >= 0.9 AND C = 1.0", "--run", good["run"][:15])
    assert proc.stdout == f"ok: {good['run']}: accuracy >= 0.9 AND C = 1.0\n"
    assert proc.stderr == ""


def test_false_expression_exits_1_with_the_values(runs) -> None:
    repo, good, bad = runs
    proc = cli(repo, "check", "accuracy >= 0.9", check=False)  # latest: the C=0.0001 run
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"flor check: {bad['run']}: accuracy >= 0.9 is false (accuracy=0.8)\n"
    proc = cli(repo, "check", 'accuracy > 0.9 and "C" < 0.1', "--run", good["run"], check=False)
    assert proc.returncode == 1
    assert proc.stderr.endswith("is false (accuracy=0.96, C=1.0)\n")


def test_null_is_not_true(runs) -> None:
    repo, _, bad = runs
    proc = cli(repo, "check", "accuracy > NULL", check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"flor check: {bad['run']}: accuracy > NULL is NULL (accuracy=0.8)\n"


def test_loop_level_names_are_summaries(runs) -> None:
    """``score`` is logged once per fold (0.5, 0.83, 0.87 in the bad run): its last value
    by default, or the summary --agg names."""
    repo, _, bad = runs
    assert flor(repo, "check", "score = 0.87").returncode == 0
    assert flor(repo, "check", "score = 0.5", "--agg", "score=first").returncode == 0
    assert flor(repo, "check", "score < 0.6 AND accuracy = 0.8", "--agg", "min").returncode == 0
    proc = flor(repo, "check", "score > 0.9", "--agg", "score=max", check=False)
    assert proc.stderr == f"flor check: {bad['run']}: score > 0.9 is false (score=0.87)\n"
    proc = flor(repo, "check", "score > 0", "--agg", "median", check=False)
    assert proc.returncode == 2 and "unknown summary 'median'" in proc.stderr


@pytest.mark.parametrize("expr, message", [
    ("accuracy >=", "syntax error"),
    ("acc >= 0.9", "no such column: acc"),
    ("1; DELETE FROM runs", "syntax error"),
    ("(SELECT count(*) FROM runs) > 0 OR load_extension('x')", "not allowed"),
    ("  ", "empty expression"),
])
def test_bad_expression_is_a_user_error(runs, expr: str, message: str) -> None:
    repo, _, _ = runs
    before = refs(repo)
    proc = cli(repo, "check", expr, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert refs(repo) == before


def test_unknown_run_and_no_runs_are_user_errors(runs, tmp_path: Path) -> None:
    repo, _, _ = runs
    proc = cli(repo, "check", "accuracy >= 0.9", "--run", "no-such-run", check=False)
    assert (proc.returncode, proc.stderr) == (2, "flor: no run matches 'no-such-run'\n")
    empty = make_repo(tmp_path / "empty", files={"a.txt": "a\n"})
    proc = cli(empty, "check", "accuracy >= 0.9", check=False)
    assert proc.returncode == 2
    assert proc.stderr == "flor: no runs recorded in this repository yet\n"
