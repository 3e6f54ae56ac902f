"""``flor query SQL``"""

from __future__ import annotations

import click

from flor_cli.output import Output, output_options


@click.command("query")
@click.argument("sql")
@output_options
def command(sql: str, out: Output) -> None:
    """Run read-only SQL over the runs cache.

    Tables: runs, args, logs, timings, checkpoints, replays, names, summaries; views
    current_logs (each run's current values: a replay's replace what it replayed) and
    runs_wide (the columns of `flor log`). Runs still running are included. Writes are
    refused.
    """
    from flor_cli.services import query
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    out.emit(*query.sql(git, sql))
