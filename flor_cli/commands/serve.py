"""``flor serve [--workers N] [--gpus LIST] [--wait]``"""

from __future__ import annotations

import sys

import click

from flor_cli.ray_options import ray_options


@click.command("serve")
@click.option("--workers", type=click.IntRange(min=1),
              help="Jobs run at once (default 1; on Ray, the cluster's CPUs).")
@click.option("--gpus", help="Comma-separated GPU ids: one worker per GPU, each job "
                             "sees its worker's GPU as CUDA_VISIBLE_DEVICES.")
@click.option("--wait", is_flag=True, help="Keep serving when the queue is empty.")
@ray_options
def command(workers: int | None, gpus: str | None, wait: bool, ray: str | bool | None,
            gpus_per_job: float) -> None:
    """Run the queued jobs (flor sweep, flor.batch) as recorded runs.

    Each job runs the code as it was when queued, checked out in a worktree under
    .git/flor. Exits when the queue is empty (1 if a job failed), unless --wait.
    Ctrl-C stops the running jobs, records them as interrupted and puts them back in
    the queue; jobs already done never run again. See `flor queue`.

    With --ray, each job is a Ray task: workers get the code as an archive and return
    their records; checkpoints travel through flor.store (or back to this process).
    Put --ray last, or write --ray=ADDRESS. --no-ray runs locally whatever git config
    flor.ray says.
    """
    from flor_cli.cores import gpu_ids
    from flor_cli.services import serve
    from flor_cli.storage.git import Git

    result = serve.serve(Git.discover("."), workers=workers, gpus=gpu_ids(gpus), wait=wait,
                         ray=ray, gpus_per_job=gpus_per_job,
                         say=lambda line: click.echo(line, err=True))
    click.echo(f"{len(result.done)} done, {len(result.failed)} failed")
    if result.failed:
        sys.exit(1)
