"""``flor serve [--workers N] [--gpus LIST] [--wait]``"""

from __future__ import annotations

import sys

import click


@click.command("serve")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs run at once.")
@click.option("--gpus", help="Comma-separated GPU ids: one worker per GPU, each job "
                             "sees its worker's GPU as CUDA_VISIBLE_DEVICES.")
@click.option("--wait", is_flag=True, help="Keep serving when the queue is empty.")
def command(workers: int, gpus: str | None, wait: bool) -> None:
    """Run the queued jobs (flor sweep, flor.batch) as recorded runs.

    Each job runs the code as it was when queued, checked out in a worktree under
    .git/flor. Exits when the queue is empty (1 if a job failed), unless --wait.
    Ctrl-C stops the running jobs, records them as interrupted and puts them back in
    the queue; jobs already done never run again. See `flor queue`.
    """
    from flor_cli.services import serve
    from flor_cli.storage.git import Git

    gpu_list = [g.strip() for g in (gpus or "").split(",") if g.strip()]
    result = serve.serve(Git.discover("."), workers=workers, gpus=gpu_list, wait=wait,
                         say=lambda line: click.echo(line, err=True))
    click.echo(f"{len(result.done)} done, {len(result.failed)} failed")
    if result.failed:
        sys.exit(1)
