"""``flor report [--where SQL] [-o FILE]``"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.option("--where", help="SQL condition over `flor log`'s columns: which runs.")
@click.option("-o", "--output", "output", default="report.html", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The HTML file to write.")
def command(where: str | None, output: Path) -> None:
    """Write one self-contained HTML page about the runs.

    The runs table (sortable, filterable), a chart of each logged name across runs,
    each final value against each arg that differs, logged images as thumbnails, and
    each code version with its diff to the one before; values backfilled by replay are
    marked. Scripts, styles, data and images are inline: the file opens without a
    network, from disk or as a CI artifact.

    An untracked file in the working tree is part of the next run's code snapshot:
    write the report outside the repository, or list it in .gitignore.
    """
    from flor_cli.services import report
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    click.echo(str(report.write(git, output, where)))
