"""``flor pull [REMOTE]``"""

from __future__ import annotations

import click


@click.command("pull")
@click.argument("remote", required=False)
def command(remote: str | None) -> None:
    """Fetch runs from REMOTE and merge them into this clone's runs.

    REMOTE defaults to the current branch's upstream remote, else origin. Notes merge
    by union of their records and flor.shadow by a merge commit: nothing recorded here
    is ever overwritten.
    """
    from flor_cli.services import sync
    from flor_cli.storage.git import Git

    git = Git.discover(".")
    result = sync.pull(git, remote or sync.default_remote(git))
    runs = "1 run" if result.changed == 1 else f"{result.changed} runs"
    click.echo(f"{runs} added or updated from {result.remote}")
