"""Render the man pages in ``man/`` from the click commands' own help.

The pages are generated, not written, so ``man flor-check`` and ``flor check --help``
cannot drift apart; ``tests/test_manpages.py`` fails when a page is out of date.
Regenerate with ``python -m flor_cli.manpages man/``.

Each subcommand page has NAME (the short help in ``main.COMMANDS``), SYNOPSIS (the usage
line), DESCRIPTION (the help text) and OPTIONS; ``flor.1`` lists the commands and
documents what they share: exit status, files, configuration, environment. Commands whose
modules do not exist (yet) get no page. Pages carry no date, so regenerating an
unchanged command reproduces its page byte for byte.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import click

from flor_cli import __version__
from flor_cli.main import COMMANDS, cli
from flor_cli.runtime.protocol import VARIABLES
from flor_cli.storage import bigfiles
from flor_cli.storage.git import NOTES_REF, SHADOW_REF

OVERVIEW = """\
flor records each run of a training script in the git repository it lives in: the code
that ran (a snapshot commit), the args, everything passed to `flor.log` with its loop
context, timings and checkpoints. Nothing in your branch, index or worktree changes.

Later, add a `flor.log` statement to today's script and `flor replay` backfills its values
into past runs: the statement is transplanted into each run's old code, which re-executes
from its checkpoints.
"""
EXIT_STATUS = [
    ("0", "Success."),
    ("1", "`flor check`: the expression is false or NULL; `flor lint`: problems were "
          "found; or the user declined a prompt."),
    ("2", "Bad input or state the user can fix (not a git repository, missing script, bad "
          "`--kwargs`, an SQL error, an unknown name, ...): one line on standard error, "
          "and nothing was written."),
    ("3", "A bug in flor (a failing git command included): one line on standard error "
          "naming a log file with the traceback and versions, under `.git/flor/logs/` "
          "(or the temporary directory outside a repository)."),
    ("130", "Interrupted (Ctrl-C)."),
    ("other", "`flor run` exits with the script's own exit status."),
]
FILES = [
    (SHADOW_REF, "The code of every run: a snapshot commit of the working tree as it was "
                 "when the run started (uncommitted and untracked files included)."),
    (NOTES_REF, "Each run's args, logs, timings and checkpoint manifest: a git note (JSON "
                "Lines) on its snapshot commit. The source of truth for everything else."),
    (".git/flor/cache.db", "SQLite index of the notes for queries; rebuilt from the notes "
                           "when deleted."),
    (".git/flor/objects/", "Content-addressed checkpoints (unless `flor.store` names "
                           "another store)."),
    (".git/flor/logs/", "What an unexpected error (exit status 3) left for a bug report: "
                        "traceback, failed git command, versions."),
    (".git/flor/journals/", "Records of runs in progress; a crashed run's journal is folded "
                            "into its note by the next flor command."),
]
CONFIGURATION = [
    ("flor.store", "`git config flor.store PATH` (or `file://PATH`): a checkpoint store "
                   "shared by several clones, in place of `.git/flor/objects/`."),
    (bigfiles.CONFIG, f"`git config {bigfiles.CONFIG} SIZE` (bytes, or with k, m, g; default "
                      f"{bigfiles.DEFAULT_MAX_BYTES // 2**20}m; 0: no limit): untracked files "
                      f"this big or bigger are left out of a run's snapshot; its note lists "
                      f"them (size, mtime, hash) and replay links them into its worktree."),
]
ENVIRONMENT = [
    ("CI", "Nothing needs to be set for non-interactive use: `flor run` never reads from a "
           "terminal, so it works unchanged in CI with standard input closed. `flor replay` "
           "asks before running; without a terminal it needs `--yes` or a piped answer "
           "(`echo y | flor replay NAME`)."),
    ("FLOR_PROGRESS", "`0`: no progress bars, even on a terminal (they are drawn on "
                      "standard error only when it is a terminal)."),
    (", ".join(VARIABLES),
     "Set by flor for the scripts it starts, and read (and removed) by `import flor` "
     "there; not meant to be set by hand. A script run as `python train.py` records "
     "without them. " + " ".join(f"{name}: {text}" for name, text in VARIABLES.items())),
]


def pages() -> dict[str, str]:
    """File name -> roff text, for flor.1 and each subcommand whose module exists."""
    root = click.Context(cli, info_name="flor", **cli.context_settings)
    available = {name: module.command for name in COMMANDS
                 if (module := _module(name)) is not None}
    out = {"flor.1": _main_page(root, list(available))}
    for name, command in available.items():
        out[f"flor-{name}.1"] = _command_page(name, command, root)
    return out


def write(directory: Path) -> list[Path]:
    """Write every page into ``directory`` and remove pages of commands that are gone."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = pages()
    for stale in directory.glob("flor*.1"):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def _module(name: str):
    if importlib.util.find_spec(f"flor_cli.commands.{name}") is None:
        return None
    return importlib.import_module(f"flor_cli.commands.{name}")


def _command_page(name: str, command: click.Command, root: click.Context) -> str:
    ctx = click.Context(command, info_name=name, parent=root)
    lines = [*_header(f"flor-{name}"), ".SH NAME", _text(f"flor-{name} - {COMMANDS[name]}"),
             ".SH SYNOPSIS", _synopsis(f"flor {name}", command.collect_usage_pieces(ctx)),
             ".SH DESCRIPTION", *_paragraphs(command.help or "")]
    options = _options(command, ctx)
    if options:
        lines += [".SH OPTIONS", *options]
    lines += [".SH SEE ALSO", r".BR flor (1)"]
    return "\n".join(lines) + "\n"


def _main_page(root: click.Context, names: list[str]) -> str:
    summary = _first_line(cli.help or "").removeprefix("flor: ")
    lines = [*_header("flor"), ".SH NAME", _text(f"flor - {summary}"),
             ".SH SYNOPSIS", _synopsis("flor", ["[--version]", "[-h | --help]", "COMMAND",
                                               "[ARGS]..."]),
             ".SH DESCRIPTION", *_paragraphs(OVERVIEW),
             ".PP", _text("Run `flor COMMAND --help` or `man flor-COMMAND` for a command's "
                          "options."),
             ".SH COMMANDS"]
    for name in names:
        lines += [".TP", rf".BR flor\-{name} (1)", _text(COMMANDS[name])]
    lines += [".SH OPTIONS", *_options(cli, root)]
    for title, entries in (("EXIT STATUS", EXIT_STATUS), ("FILES", FILES),
                           ("CONFIGURATION", CONFIGURATION), ("ENVIRONMENT", ENVIRONMENT)):
        lines.append(f".SH {title}")
        for term, text in entries:
            lines += [".TP", f".B {_escape(term)}", _text(text)]
    lines += [".SH SEE ALSO", ".BR git (1),", r".BR git\-notes (1)"]
    return "\n".join(lines) + "\n"


def _header(title: str) -> list[str]:
    return [f'.TH "{title.upper()}" "1" "" "flor {__version__}" "flor manual"', ".ad l", ".nh"]


def _synopsis(prefix: str, pieces: list[str]) -> str:
    return rf"\fB{_escape(prefix)}\fR " + _escape(" ".join(pieces))


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
        if record is not None:
            lines += [".TP", f".B {_escape(record[0])}", _text(record[1])]
    return lines


def _paragraphs(help_text: str) -> list[str]:
    """click's help text as roff: blank-line paragraphs; a ``\\b`` paragraph is kept verbatim."""
    text = inspect.cleandoc(help_text.split("\f")[0])
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if not paragraph.strip():
            continue
        if lines:
            lines.append(".PP")
        if paragraph.startswith("\b"):
            lines += [".nf", *(_text(l) for l in paragraph.splitlines()[1:]), ".fi"]
        else:
            lines += [_text(l.strip()) for l in paragraph.splitlines()]
    return lines


def _first_line(help_text: str) -> str:
    return inspect.cleandoc(help_text).split("\n\n")[0].replace("\n", " ")


def _text(line: str) -> str:
    """One line of running text: escaped, with `code` in bold, safe at a line's start."""
    escaped = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", _escape(line))
    return "\\&" + escaped if escaped[:1] in (".", "'") else escaped


def _escape(text: str) -> str:
    return text.replace("\\", r"\e").replace("-", r"\-")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m flor_cli.manpages DIRECTORY")
    for path in write(Path(args[0])):
        print(path)


if __name__ == "__main__":
    main()
