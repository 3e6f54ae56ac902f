"""``flor rm RUN...``, ``flor rm --undo RUN...``, ``flor rm --list``"""

from __future__ import annotations

import click

from flor_cli.output import Output, output_options


@click.command("rm")
@click.argument("runs", nargs=-1)
@click.option("--undo", is_flag=True, help="Restore removed RUNs (until `flor gc`).")
@click.option("--list", "listing", is_flag=True, help="List the removed runs.")
@output_options
def command(runs: tuple[str, ...], undo: bool, listing: bool, out: Output) -> None:
    """Remove runs from every listing and query; `--undo` brings them back.

    The removal is a record appended to each run's note, so it reaches other clones
    with push/pull and survives a pull from a clone that still has the run. Nothing is
    deleted until `flor gc`, which frees the removed runs' checkpoints; after it they
    cannot be restored.
    """
    from flor_cli.services import lifecycle
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    if listing:
        out.emit(["run", "removed", "collected"], lifecycle.removed(git))
        return
    if not runs:
        raise click.UsageError("give the RUNs to remove (or --list)")
    done = lifecycle.restore(git, runs) if undo else lifecycle.remove(git, runs)
    verb = "restored" if undo else "removed"
    for run in done:
        click.echo(f"flor: {verb} {run}", err=True)
