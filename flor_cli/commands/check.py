"""``flor check EXPR [--run RUN]``"""

from __future__ import annotations

import sys

import click

from flor_cli.output import agg_option


@click.command("check")
@click.argument("expr")
@click.option("--run", "run", metavar="RUN", default="latest", show_default=True,
              help="The run to check: a run id, a unique prefix of one, a shadow commit "
                   "prefix, or `latest`.")
@agg_option
def command(expr: str, run: str, aggs: tuple[str, ...]) -> None:
    """Exit 0 when EXPR is true for a run, 1 when it is false or NULL: a CI gate.

    EXPR is a SQL expression over the run's columns in `flor log` (args and each logged
    name's last value, or the summary --agg chooses), e.g. "accuracy >= 0.9 AND lr < 0.1". It runs read-only. A false check
    prints the values of the columns EXPR names; a bad expression exits 2.
    """
    from flor_cli.services.check import check, describe
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    outcome = check(git, expr, run, aggs)
    if outcome.passed:
        click.echo(f"ok: {outcome.run}: {outcome.expr}")
        return
    click.echo(f"flor check: {describe(outcome)}", err=True)
    sys.exit(1)
