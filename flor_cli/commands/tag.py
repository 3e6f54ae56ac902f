"""``flor tag [RUN NAME...] [-d NAME] [-m MESSAGE]``"""

from __future__ import annotations

import click

from flor_cli.output import Output, output_options


@click.command("tag")
@click.argument("run", required=False)
@click.argument("names", nargs=-1)
@click.option("-d", "--delete", "delete", multiple=True, metavar="NAME",
              help="Remove this tag from RUN.")
@click.option("-m", "--message", help="Annotate RUN with this text (replaces its annotation).")
@output_options
def command(run: str | None, names: tuple[str, ...], delete: tuple[str, ...],
            message: str | None, out: Output) -> None:
    """Tag or annotate a run; without RUN, list every tag.

    A tag (or the name given by `flor run --name`) stands for the newest run carrying it
    wherever a run id is accepted (`flor show best`), shows in `flor log`'s tags column
    and in the `tags` table (`--where "tags LIKE '%best%'"`). Tags travel with push/pull.
    """
    from flor_cli.services import lifecycle
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    if run is None:
        if names or delete or message is not None:
            raise click.UsageError("give the RUN to tag")
        out.emit(["tag", "run"], lifecycle.tags(git))
        return
    tagged = lifecycle.tag(git, run, names, delete, message)
    click.echo(f"flor: tagged {tagged}", err=True)
