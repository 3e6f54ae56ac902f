"""Arguments and mistakes: --kwargs casts, misspelt names, unknown subcommands, SQL errors,
and the line that says which run was recorded."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import flor, flor_json, git, make_repo
from flor_cli.errors import UserError
from flor_cli.main import main
from flor_cli.runtime.args import MISSING, cast, revive, split_kwargs, unknown_kwargs_line

SCRIPT = """\
import sys
import flor
alpha = flor.arg("alpha", 0.1)
layers = flor.arg("layers", [128, 128])
print("before", alpha, layers, sys.argv[1:], flush=True)
for epoch in flor.loop("epoch", range(2)):
    flor.log("loss", alpha * epoch)
print("after", flush=True)
"""

NO_LOOP = """\
import flor
flor.log("acc", flor.arg("alpha", 0.1))
"""


@pytest.mark.parametrize("text, default, expected", [
    ("[1, 2]", [128, 128], [1, 2]),
    ("(3,4)", (1,), (3, 4)),
    ("[3,4]", (1,), (3, 4)),
    ("{'a': 1}", {}, {"a": 1}),
    ("nan", 0.5, math.nan),
    ("inf", 1, math.inf),
    ("-inf", None, -math.inf),
    ("[1,2]", MISSING, [1, 2]),
    ("0.5", MISSING, 0.5),
    ("adam", MISSING, "adam"),
    ("yes", False, True),
])
def test_casts(text, default, expected) -> None:
    value = cast("x", text, default)
    assert type(value) is type(expected)
    assert value == expected or (math.isnan(value) and math.isnan(expected))


@pytest.mark.parametrize("text, default", [("[1,", [1]), ("{1: 2}", [1]), ("x", (1,)),
                                           ("__import__('os')", {}), ("1.5", 3)])
def test_bad_literals_are_user_errors(text, default) -> None:
    with pytest.raises(UserError, match=r"not a valid"):
        cast("x", text, default)


def test_recorded_values_come_back_in_their_type() -> None:
    assert revive([1, 2], (0,)) == (1, 2)
    assert math.isnan(revive("nan", 0.1))
    assert revive("adam", "sgd") == "adam"


def test_script_flags_pass_through_untouched() -> None:
    argv = ["--verbose", "--kwargs", "a=1", "b=[1, 2]", "-v", "data.csv", "--kwargs", "c=x"]
    assert split_kwargs(argv) == (["--verbose", "-v", "data.csv"],
                                  {"a": "1", "b": "[1, 2]", "c": "x"})


def test_unknown_names_line_suggests_the_closest() -> None:
    assert unknown_kwargs_line({"alpha": "1"}, ["alpha"]) is None
    assert unknown_kwargs_line({"alpah": "1"}, ["alpha", "layers"]) == (
        "--kwargs alpah: no flor.arg reads it (known args: alpha, layers); did you mean alpha?")
    line = unknown_kwargs_line({"alpah": "1", "zzz": "2"}, ["alpha"])
    assert "alpah, zzz: no flor.arg reads them" in line and "alpha for alpah" in line


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", files={"train.py": SCRIPT, "flat.py": NO_LOOP,
                                               "nodefault.py": "import flor\n"
                                               "print(repr(flor.arg('lr')))\n"})


def test_misspelt_kwarg_stops_the_run_when_its_main_loop_starts(project: Path) -> None:
    before = git(project, "for-each-ref")
    proc = flor(project, "run", "train.py", "--kwargs", "alpah=0.5", check=False)
    assert proc.returncode == 2
    assert proc.stdout.startswith("before") and "after" not in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "flor: --kwargs alpah: no flor.arg reads it (known args: alpha, layers); "
        "did you mean alpha?"]
    assert git(project, "for-each-ref") == before  # nothing recorded of the aborted run
    # a script without a main loop: the same line, as a warning, and the run is kept
    proc = flor(project, "run", "flat.py", "--kwargs", "alpah=0.5")
    assert "flor: warning: --kwargs alpah: no flor.arg reads it" in proc.stderr


def test_literals_flags_and_the_recorded_run_line(project: Path) -> None:
    proc = flor(project, "run", "train.py", "--fast", "--kwargs", "layers=[64,32]",
                "alpha=nan", "-k", "3")
    assert "before nan [64, 32] ['--fast', '-k', '3']" in proc.stdout
    [run] = flor_json(project, "log")
    line = proc.stderr.strip().splitlines()[-1]
    assert line == f"flor: recorded run {run['run']} (8 records) \u2014 flor show {run['run']}"
    assert str(run["layers"]).replace(" ", "") == "[64,32]"
    # a plain `python train.py` says it too, and `python -m flor` is `flor`
    plain = subprocess.run([sys.executable, "train.py", "--kwargs", "alpha=0.2"], cwd=project,
                           capture_output=True, text=True, check=True)
    assert plain.stderr.startswith("flor: recorded run ")
    proc = subprocess.run([sys.executable, "-m", "flor", "log", "--csv"], cwd=project,
                          capture_output=True, text=True, check=True)
    assert len(proc.stdout.strip().splitlines()) == 3


def test_arg_without_default(project: Path) -> None:
    assert "0.5" in flor(project, "run", "nodefault.py", "--kwargs", "lr=0.5").stdout
    proc = flor(project, "run", "nodefault.py", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("flor: flor.arg('lr') has no default and no value: pass "
                                   "--kwargs lr=VALUE, or give it one: flor.arg('lr', VALUE)")


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_unknown_subcommand_suggests_and_bare_flor_helps(capsys) -> None:
    code, _, err = _cli(["lgo"], capsys)
    assert (code, err) == (2, "flor: no such command 'lgo'; did you mean 'log'?\n")
    code, out, err = _cli([], capsys)
    assert code == 0 and out.startswith("Usage: flor") and "replay" in out and err == ""


@pytest.mark.parametrize("args, line", [
    (["log", "--where", "lr ="], "--where 'lr =': incomplete expression (syntax error at its end)"),
    (["log", "--sort", "lr,"], "--sort 'lr,': incomplete expression (syntax error at its end)"),
    (["log", "--where", "lr = = 1"], "--where 'lr = = 1': near \"=\": syntax error"),
    (["check", "lr >"], "check 'lr >': incomplete expression (syntax error at its end)"),
])
def test_sql_errors_point_at_the_users_text(project: Path, monkeypatch, capsys, args,
                                            line) -> None:
    if args[0] == "check":
        flor(project, "run", "flat.py")
    monkeypatch.chdir(project)
    code, _, err = _cli(args, capsys)
    assert (code, err) == (2, f"flor: {line}\n")


def test_a_big_journal_says_it_is_being_saved(tmp_path: Path, monkeypatch, capsys) -> None:
    from flor_cli.runtime import announce
    from flor_cli.storage import journal
    from flor_cli.storage.git import Git

    repo = make_repo(tmp_path / "r", files={"t.py": "print(1)\n"})
    monkeypatch.chdir(repo)
    git_ = Git.discover(repo)
    path = journal.begin(git_, "t.py", [], {})
    size = path.stat().st_size
    monkeypatch.setattr(announce, "SAY_SAVING_BYTES", size)
    announce.fold_and_report(git_, path, {"status": "ok", "exit": 0})
    saving, recorded = capsys.readouterr().err.splitlines()
    assert saving == f"flor: saving run {path.stem} ({size} B of records)..."
    assert recorded.startswith(f"flor: recorded run {path.stem} (0 records)")
