"""``flor export NAME... [--where SQL] -o DIR``"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("names", nargs=-1, required=True)
@click.option("--where", help="SQL condition over `flor log`'s columns: which runs.")
@click.option("-o", "--output", "output", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write into: DIR/<run>/<name>[.<loop>-<index>...].<ext>.")
def command(names: tuple[str, ...], where: str | None, output: Path) -> None:
    """Write logged images and files (flor.log of a Figure, flor.Image, flor.File) out.

    One folder per run, one file per logged value, named by its loop context. NAMEs may
    also be comma-separated. Each file's path is printed once it is written, one at a
    time: memory does not grow with the number of files.
    """
    from flor_cli.services.export import export
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    for done in export(git, names, output, where):  # each file as it is written
        if done.written is not None:
            click.echo(str(done.written))
        else:
            click.echo(f"flor: not in any object store (pull it, or set flor.store): "
                       f"{done.missing}", err=True)
