"""``flor run SCRIPT [ARGS...] [--kwargs k=v ...]``"""

from __future__ import annotations

import sys

import click


@click.command("run", context_settings={"ignore_unknown_options": True,
                                        "allow_interspersed_args": False})
@click.option("--name", metavar="NAME",
              help="Name the run: NAME stands for it wherever a run id is accepted "
                   "(a tag, see `flor tag`). Goes before SCRIPT.")
@click.argument("script")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def command(name: str | None, script: str, script_args: tuple[str, ...]) -> None:
    """Run SCRIPT with this Python, in this directory, and record the run.

    Code (a snapshot on flor.shadow, uncommitted and untracked files included), args,
    logs, timings and checkpoints are recorded as a git note; your branch, index and
    worktree are never touched. ARGS pass through to the script; `--kwargs k=v ...`
    sets what flor.arg returns. The script's output and exit status pass through.
    """
    from flor_cli.services import record

    sys.exit(record.run_script(script, list(script_args), name=name))
