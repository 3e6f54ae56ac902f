"""``flor watch``: ``flor log --follow`` (the same options, without --follow)."""

from __future__ import annotations

import time
from typing import Callable

import click

from flor_cli.output import Output, on_terminal

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


def follow(git, table: Callable[[], tuple[list[str], list]], out: Output,
           interval: float) -> None:
    """Print ``table()`` again whenever it changes, every ``interval`` seconds.

    On a terminal the screen is redrawn until Ctrl-C; piped, each changed table is
    printed after a blank line, and it ends once no run is running (so a script can
    wait for its runs with ``flor watch | tail``).
    """
    from flor_cli.services import query

    terminal, shown = on_terminal(), None
    while True:
        running = query.running(git)  # first: with none left, this table is the last word
        text = out.render(*table())
        if text != shown:
            if terminal:
                click.echo(_CLEAR, nl=False)
            elif shown is not None:
                click.echo("")
            click.echo(text, color=terminal)
            shown = text
        if not terminal and not running:
            return
        time.sleep(interval)


def _watch_command() -> click.Command:
    from flor_cli.commands import log

    params = [p for p in log.command.params if p.name != "follow"]

    def callback(**kwargs):
        return log.command.callback(follow=True, **kwargs)

    return click.Command(
        "watch", params=params, callback=callback,
        help="Show `flor log` and refresh it as running runs log: the same as `flor log "
             "--follow`, with the same options. On a terminal it redraws until Ctrl-C; "
             "piped, it prints each changed table and ends when no run is running.")


command = _watch_command()
