"""``flor log [--pivot [NAME...]] [--where SQL] [--sort SQL] [--limit N] [--format F]``"""

from __future__ import annotations

import click

from flor_cli.output import chosen_format, output_options, render


@click.command("log")
@click.option("--pivot", "pivot", is_flag=True,
              help="One row per run x loop iteration, one column per NAME.")
@click.argument("names", nargs=-1)
@click.option("--where", help="SQL condition over the output's columns.")
@click.option("--sort", help="SQL ORDER BY over the output's columns.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many rows.")
@output_options
def command(pivot: bool, names: tuple[str, ...], where: str | None, sort: str | None,
            limit: int | None, fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Show recorded runs: one row per run with its args and final values.

    Its checkpoints column says whether each run's checkpoints are here (a memoized
    replay is possible in this clone) or missing; --where and --sort may use it.

    With --pivot, FlorDB's pivot of the logged NAMEs (all names when none are given):
    loop columns hold 0-based iteration indices; args and run-level values repeat on
    their run's rows. NAMEs may also be comma-separated.
    """
    from flor_cli.services import query
    from flor_cli.storage.git import Git
    from flor_cli.storage.journal import fold_orphans

    git = Git.discover(".")
    fold_orphans(git)  # runs that crashed are shown too
    wanted = [n for name in names for n in name.split(",") if n]
    if pivot:
        columns, rows = query.pivot(git, wanted, where, sort, limit)
    elif wanted:
        raise click.UsageError("NAMEs go with --pivot")
    else:
        columns, rows = query.runs(git, where, sort, limit)
    click.echo(render(columns, rows, chosen_format(fmt_name, as_csv, as_json, as_markdown),
                      tablefmt))
