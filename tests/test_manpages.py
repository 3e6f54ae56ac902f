"""The man pages in man/ are generated from the commands' --help, and are up to date."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from flor_cli.main import COMMANDS

MAN = ROOT / "man"


def existing_commands() -> list[str]:
    return [n for n in COMMANDS if importlib.util.find_spec(f"flor_cli.commands.{n}")]


def test_committed_pages_equal_regenerated_ones(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "flor_cli.manpages", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.1")}
    committed = {p.name: p.read_text() for p in MAN.glob("*.1")}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"man pages out of date: {stale}; run: python -m flor_cli.manpages man/"


def test_every_command_has_a_page_listed_in_flor_1() -> None:
    main_page = (MAN / "flor.1").read_text()
    for name in existing_commands():
        page = (MAN / f"flor-{name}.1").read_text()
        assert f"\\fBflor {name}\\fR" in page  # the synopsis
        assert f".BR flor\\-{name} (1)" in main_page
    for section in ("EXIT STATUS", "FILES", "ENVIRONMENT"):
        assert f".SH {section}" in main_page
    for path in ("refs/heads/flor.shadow", "refs/notes/flor", ".git/flor/cache.db",
                 ".git/flor/objects/"):
        assert path.replace("-", "\\-") in main_page


def test_help_text_reaches_the_page() -> None:
    from flor_cli.commands.check import command

    page = (MAN / "flor-check.1").read_text()
    first = command.help.strip().splitlines()[0].replace("-", "\\-")
    assert first in page and ".B \\-\\-run RUN" in page and ".B \\-h, \\-\\-help" in page


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_every_page_without_warnings() -> None:
    for page in sorted(MAN.glob("*.1")):
        proc = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                              text=True, env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
        assert proc.returncode == 0 and proc.stderr == "", (page.name, proc.stderr)
        assert "SYNOPSIS" in proc.stdout
