"""``flor queue [--state S]`` and ``flor queue retry [JOB...]``"""

from __future__ import annotations

import click

from flor_cli.output import Output, output_options


@click.group("queue", invoke_without_command=True)
@click.option("--state", type=click.Choice(["pending", "running", "done", "failed"]),
              help="Only the jobs in this state.")
@output_options
@click.pass_context
def command(ctx: click.Context, state: str | None, out: Output) -> None:
    """Show the queued jobs: state and the run each one recorded.

    Jobs are queued by `flor sweep` or flor.batch and run by `flor serve`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from flor_cli.services import queue
    from flor_cli.storage.git import Git

    rows = [(j.id, j.state, j.script, " ".join(f"{k}={v}" for k, v in j.kwargs.items()),
             j.run, j.tries, j.error) for j in queue.jobs(Git.discover("."), state)]
    out.emit(["job", "state", "script", "kwargs", "run", "tries", "error"], rows)


@command.command("retry")
@click.argument("jobs", nargs=-1, type=int)
def retry(jobs: tuple[int, ...]) -> None:
    """Put failed JOBs (default: every failed job) back in the queue."""
    from flor_cli.services import queue
    from flor_cli.storage.git import Git

    n = queue.retry(Git.discover("."), list(jobs))
    click.echo(f"{n} job{'s' if n != 1 else ''} pending again")
