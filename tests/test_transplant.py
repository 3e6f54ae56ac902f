"""Transplanting hindsight flor.log statements into old versions of a script.

The corpus in fixtures/transplant holds one case per folder: before.py (the old
version), now.py (today's), names.txt, and expected.py or expected_error.txt.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from flor_cli.commands.transplant import command
from flor_cli.errors import NoPlace, UserError
from flor_cli.main import main
from flor_cli.services.replay.discover import find_statements
from flor_cli.services.replay.transplant import diff, transplant

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "transplant"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
PLACED = [c for c in CASES if (CORPUS / c / "expected.py").exists()]
NO_PLACE = [c for c in CASES if (CORPUS / c / "expected_error.txt").exists()]


def case(name: str) -> tuple[list[str], str, str]:
    folder = CORPUS / name
    names = [n.strip() for n in (folder / "names.txt").read_text().split(",") if n.strip()]
    return names, (folder / "now.py").read_text(), (folder / "before.py").read_text()


@cache
def transplanted(name: str) -> str:
    return transplant(*case(name))


def test_every_case_has_one_expectation_and_the_corpus_covers_every_level() -> None:
    from flor_cli.services.replay.discover import LEVELS, find_statements

    for name in CASES:
        files = {p.name for p in (CORPUS / name).iterdir()}
        assert {"names.txt", "now.py", "before.py"} <= files, name
        assert ("expected.py" in files) != ("expected_error.txt" in files), name
    levels = {s.level for name in PLACED
              for s in find_statements(case(name)[1], case(name)[0])}
    assert levels == set(LEVELS)


@pytest.mark.parametrize("name", PLACED)
def test_places_like_a_person(name: str) -> None:
    expected = (CORPUS / name / "expected.py").read_text()
    result = transplanted(name)
    assert result == expected, diff(expected, result, f"{name}/expected.py")


@pytest.mark.parametrize("name", NO_PLACE)
def test_no_place(name: str) -> None:
    names, new, old = case(name)
    with pytest.raises(NoPlace) as raised:
        transplant(names, new, old)
    message = str(raised.value)
    assert (CORPUS / name / "expected_error.txt").read_text().strip() in message
    assert "\n" not in message


@pytest.mark.parametrize("name", PLACED)
def test_old_lines_kept_byte_for_byte_in_order(name: str) -> None:
    result = iter(transplanted(name).splitlines(keepends=True))
    for line in case(name)[2].splitlines(keepends=True):
        assert any(line == out for out in result), f"lost or reordered: {line!r}"


@pytest.mark.parametrize("name", PLACED)
def test_transplanting_again_changes_nothing(name: str) -> None:
    names, new, _ = case(name)
    once = transplanted(name)
    assert transplant(names, new, once) == once


@pytest.mark.parametrize("name", PLACED)
def test_statements_run_at_the_same_level_as_today(name: str) -> None:
    names, new, _ = case(name)
    levels = {(s.name, s.level) for s in find_statements(new, names)}
    assert {(s.name, s.level) for s in find_statements(transplanted(name), names)} == levels


def test_unknown_name_is_a_user_error() -> None:
    names, new, old = case(CASES[0])
    with pytest.raises(UserError, match=r"unknown name 'grad': now\.py logs loss, val_acc"):
        transplant(["grad"], new, old, new_path="now.py")


@pytest.mark.parametrize("imports, log", [("import flor as fl", "fl.log"),
                                          ("from flor import log, loop", "log")])
def test_uses_the_old_spelling_of_flor(imports: str, log: str) -> None:
    new = ('import flor\nfor e in flor.loop("epoch", range(3)):\n'
           '    x = e * 2\n    flor.log("x", x)\n')
    loop = "loop" if log == "log" else "fl.loop"
    old = f'{imports}\nfor e in {loop}("epoch", range(3)):\n    x = e * 2\n'
    assert transplant(["x"], new, old) == old + f'    {log}("x", x)\n'


def test_diff_shows_the_inserted_line() -> None:
    text = diff(case("03_nested")[2], transplanted("03_nested"), "train.py")
    assert text.startswith("--- a/train.py\n+++ b/train.py\n")
    assert [l for l in text.splitlines() if l.startswith("+") and not l.startswith("+++")] == \
        ['+            flor.log("loss", loss.item())']


def cli_args(name: str, *extra: str) -> list[str]:
    folder = CORPUS / name
    return [(folder / "names.txt").read_text().strip(), "--from", str(folder / "now.py"),
            "--into", str(folder / "before.py"), *extra]


def test_command_prints_the_result() -> None:
    result = CliRunner().invoke(command, cli_args("17_multiple_names"))
    assert result.exit_code == 0, result.output
    assert result.stdout == (CORPUS / "17_multiple_names" / "expected.py").read_text()


def test_command_writes_output_file(tmp_path: Path) -> None:
    out = tmp_path / "old_with_logs.py"
    result = CliRunner().invoke(command, cli_args("11_renamed_variables", "-o", str(out)))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text() == (CORPUS / "11_renamed_variables" / "expected.py").read_text()


def test_command_leaves_no_place_to_the_central_handler() -> None:
    result = CliRunner().invoke(command, cli_args("16_no_nested_loop"))
    assert isinstance(result.exception, NoPlace)
    assert result.exception.exit_code == 2
    assert result.stdout == ""


def test_flor_transplant_without_a_place_exits_2_with_one_line(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out.py"
    with pytest.raises(SystemExit) as exited:
        main(["transplant", *cli_args("16_no_nested_loop", "-o", str(out))])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "no place for 'loss'" in captured.err and "flor.loop('step')" in captured.err
    assert not out.exists()
