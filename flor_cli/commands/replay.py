"""``flor replay NAME[,NAME...] [--where SQL] [--yes] [--dry-run] [--diff] [--workers N]
[--jobs N] [--no-fork] [--gpus LIST] [--rev REV] [--no-verify]``: renders the plan, asks, and shows the outcome
of the replay library (services/replay/api.py)."""

from __future__ import annotations

import sys

import click

from flor_cli.output import Output, output_options
from flor_cli.ray_options import ray_options


@click.command("replay")
@click.argument("names", nargs=-1, required=True)
@click.option("--where", help="SQL condition over `flor log`'s columns (default: the runs "
                              "lacking any NAME).")
@click.option("--yes", "-y", is_flag=True, help="Replay without asking.")
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Show the transplanted code, once per distinct version.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes per run for nested-loop statements (epochs split among them).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Runs replayed at once. Default: the cores this process may use divided "
                   "by --workers (jobs x workers processes, no more than the cores).")
@click.option("--no-fork", "no_fork", is_flag=True,
              help="Start every worker in a fresh interpreter. Default: each job slot "
                   "imports flor and the script's top-level installed packages once, "
                   "then forks a worker per run (Linux; the plan's start column).")
@click.option("--gpus", help="Comma-separated GPU ids, given to workers round-robin.")
@click.option("--rev", help="Take today's statements from this commit, not the worktree.")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="Do not check skipping against re-execution on one epoch per version.")
@ray_options
@output_options
def command(names: tuple[str, ...], where: str | None, yes: bool, dry_run: bool,
            show_diff: bool, workers: int, jobs: int | None, no_fork: bool, gpus: str | None,
            rev: str | None, no_verify: bool, ray: str | bool | None, gpus_per_job: float,
            out: Output) -> None:
    """Backfill the flor.log statements for NAMEs into past runs by replaying them.

    Each selected run's code is checked out into a temporary worktree, today's
    statements are inserted into it, and it runs again from its checkpoints, only as
    far as the statements need: prefix statements stop at the main loop, outer-loop
    and suffix statements skip nested loops by restoring checkpoints, nested-loop
    statements re-run them (split across --workers). A statement that reads something
    the checkpoints do not hold re-executes its run's nested loops instead (the plan's
    note says which name). Unless --no-verify, the first run of each version of the
    code also re-executes its last checkpointed epochs and compares; a difference, or
    a name it could not compare, turns skipping off for that version. --jobs runs replay at once (a version's verifying run first, then
    its other runs); each job slot's workers are forked from one process that has
    imported the script's packages. The new values are appended to the runs' notes, a
    batch of runs per commit; your worktree, index and branch are never touched.
    With nothing to replay, it says so and exits 0.
    """
    from flor_cli.prompt import confirmed
    from flor_cli.services.query import split_names
    from flor_cli.services.replay import api
    from flor_cli.storage.journal import repository_to_read

    def show(plan: api.Plan) -> None:
        click.echo(out.render(*plan.table()))
        if show_diff:
            click.echo(api.diffs(plan))

    def confirm(question: str) -> None:
        if not confirmed(question):
            raise click.exceptions.Abort()

    def to_stderr(line: str) -> None:
        click.echo(line, err=True)

    done = api.replay(repository_to_read(), split_names(names), show=show,
                      confirm=None if yes else confirm, tell=to_stderr, warn=to_stderr,
                      dry_run=dry_run, where=where, workers=workers, rev=rev,
                      verify=not no_verify, jobs=jobs, fork=not no_fork, gpus=gpus, ray=ray,
                      gpus_per_job=gpus_per_job)
    if done.rows:
        click.echo(out.render(done.columns, done.rows))
    if done.failed:
        sys.exit(1)
