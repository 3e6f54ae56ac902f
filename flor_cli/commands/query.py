"""``flor query SQL``"""

from __future__ import annotations

import click

from flor_cli.output import chosen_format, output_options, render


@click.command("query")
@click.argument("sql")
@output_options
def command(sql: str, fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Run read-only SQL over the runs cache.

    Tables: runs, args, logs, timings, checkpoints, replays, names; view runs_wide (the
    columns of `flor log`). Writes are refused.
    """
    from flor_cli.services import query
    from flor_cli.storage.git import Git
    from flor_cli.storage.journal import fold_orphans

    git = Git.discover(".")
    fold_orphans(git)
    columns, rows = query.sql(git, sql)
    click.echo(render(columns, rows, chosen_format(fmt_name, as_csv, as_json, as_markdown),
                      tablefmt))
