"""``flor completion bash|zsh|fish``: the shell's completion script, and what it completes.

The script is click's own (it calls ``flor`` back with ``_FLOR_COMPLETE`` set). Run ids,
tags and logged names come straight from ``.git/flor/cache.db``, opened read-only: a
keystroke must not fold journals, merge fetched runs or sync the cache, so what it offers
is what the last flor command saw.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

SHELLS = ("bash", "zsh", "fish")
# parameter name -> what completes it, across every command (the commands stay unaware)
_RUN_PARAMS = {"run", "runs", "run_a", "run_b"}
_NAME_PARAMS = {"names"}


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    It completes subcommands, options, run ids, tags and logged names. Install it with:

    \b
      bash: flor completion bash > ~/.local/share/bash-completion/completions/flor
      zsh:  flor completion zsh > "${fpath[1]}/_flor"
      fish: flor completion fish > ~/.config/fish/completions/flor.fish

    or, for the current shell only: eval "$(flor completion bash)" (zsh: the same with
    zsh; fish: flor completion fish | source).
    """
    from flor_cli.main import COMPLETE_VAR, cli

    click.echo(get_completion_class(shell)(cli, {}, "flor", COMPLETE_VAR).source())


def attach(command: click.Command) -> None:
    """Give ``command``'s run and name parameters their completions (called only while
    completing, so the commands' modules need not know about completion)."""
    for param in command.params:
        if param.name in _RUN_PARAMS:
            param._custom_shell_complete = complete_runs  # click's shell_complete= hook
        elif param.name in _NAME_PARAMS:
            param._custom_shell_complete = complete_names


def complete_runs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Run ids (newest first, with their script) and tags starting with ``incomplete``."""
    rows = _cached("SELECT run, script FROM runs ORDER BY start DESC")
    items = [CompletionItem(run, help=script) for run, script in rows if run.startswith(incomplete)]
    tags = _cached("SELECT DISTINCT tag FROM tags ORDER BY tag")
    items += [CompletionItem(tag, help="tag") for (tag,) in tags if tag.startswith(incomplete)]
    return items + ([CompletionItem("latest")] if "latest".startswith(incomplete) else [])


def complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Logged names and args; after a comma, the next one of a ``a,b`` list."""
    head, _, last = incomplete.rpartition(",")
    prefix = head + "," if head else ""
    names = [n for (n,) in _cached("SELECT DISTINCT name FROM names ORDER BY name")]
    return [CompletionItem(prefix + n) for n in names if n.startswith(last)]


def _cached(sql: str) -> list[tuple]:
    """Rows from the cache as it is, or none (no repository, no cache, an old schema)."""
    from flor_cli.errors import UserError
    from flor_cli.storage.cache import path_of
    from flor_cli.storage.git import Git

    try:
        path = path_of(Git.discover("."))
    except UserError:
        return []
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
