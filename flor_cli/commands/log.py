"""``flor log [--pivot [NAME...]] [--where SQL] [--sort SQL] [-n N] [--agg S] [--follow]``"""

from __future__ import annotations

import click

from flor_cli.output import Output, agg_option, output_options


@click.command("log")
@click.option("--pivot", "pivot", is_flag=True,
              help="One row per run x loop iteration, one column per NAME.")
@click.argument("names", nargs=-1)
@click.option("--where", help="SQL condition over the output's columns.")
@click.option("--sort", help="SQL ORDER BY over the output's columns (default: newest first).")
@click.option("-n", "--limit", "limit", type=click.IntRange(min=0), metavar="N",
              help="Only the N newest runs (with --sort: the first N rows).")
@agg_option
@click.option("--follow", is_flag=True,
              help="Refresh the table as running runs log (Ctrl-C stops; piped, it ends "
                   "when no run is running).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between refreshes with --follow.")
@output_options
def command(pivot: bool, names: tuple[str, ...], where: str | None, sort: str | None,
            limit: int | None, aggs: tuple[str, ...], follow: bool, interval: float,
            out: Output) -> None:
    """Show recorded runs, newest first: one row per run with its args and a summary of
    each logged name (its last value; --agg chooses another). Runs still running are
    shown with status `running` and what they have logged so far.

    Its checkpoints column says whether each run's checkpoints are here (a memoized
    replay is possible in this clone) or missing; --where, --sort and `flor check` may
    use it and every other column.

    With --pivot, FlorDB's pivot of the logged NAMEs (all names when none are given):
    loop columns hold 0-based iteration indices; args and run-level values repeat on
    their run's rows. NAMEs may also be comma-separated. Its rows are made and printed
    as they are read, in bounded memory however many values a run logged; --where over
    run-level columns and -n choose the runs before any value is read, while --sort and
    --where over loop columns go through a temporary file.
    """
    from flor_cli.services import query
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()  # runs that crashed are shown too
    wanted = query.split_names(names)
    if wanted and not pivot:
        raise click.UsageError("NAMEs go with --pivot")
    if aggs and pivot:
        raise click.UsageError("--agg goes with the runs table, not --pivot")

    def table() -> query.Table:
        if pivot:
            return query.pivot(git, wanted, where, sort, limit)
        return query.runs(git, where, sort, limit, aggs)

    if follow:
        from flor_cli.commands.watch import follow as follow_table

        follow_table(git, table, out, interval)
    elif pivot:  # rows printed as they are read: a pivot may have millions
        with query.pivot_rows(git, wanted, where, sort, limit) as (columns, rows):
            out.emit(columns, rows)
    else:
        with query.runs_rows(git, where, sort, limit, aggs) as (columns, rows):
            out.emit(columns, rows)
