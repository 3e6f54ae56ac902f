"""``flor push [REMOTE]``"""

from __future__ import annotations

import click


@click.command("push")
@click.argument("remote", required=False)
def command(remote: str | None) -> None:
    """Push runs (flor.shadow and refs/notes/flor) to REMOTE.

    REMOTE defaults to the current branch's upstream remote, else origin. Never forces:
    when the remote has runs this clone lacks, they are pulled and merged first. With
    `git config flor.store PATH`, checkpoints are copied to that shared store too, so
    other clones can replay these runs.
    """
    from flor_cli.services import sync
    from flor_cli.storage.git import Git

    git = Git.discover(".")
    result = sync.push(git, remote or sync.default_remote(git))
    click.echo(f"pushed {', '.join(result.refs)} to {result.remote}")
    if result.store:
        click.echo(f"copied {result.copied} checkpoint objects to {result.store}")
