"""``flor gc [--keep-last N] [--keep-history] [--dry-run]``"""

from __future__ import annotations

import click


@click.command("gc")
@click.option("--keep-last", type=click.IntRange(min=1), metavar="N",
              help="Keep the checkpoints of each run's last N epochs only.")
@click.option("--keep-history", is_flag=True,
              help="Do not squash the notes history (keep one commit per run, replay, pull).")
@click.option("--dry-run", "-n", is_flag=True, help="Say what would be freed; change nothing.")
def command(keep_last: int | None, keep_history: bool, dry_run: bool) -> None:
    """Delete checkpoint objects that no run needs and report what was freed.

    Collected: objects no live run's note references (those of runs removed by `flor
    rm`, which then can no longer be restored), and with --keep-last the checkpoints of
    all but each run's last N epochs (replay re-executes from an earlier one instead).
    Only this clone's store is collected, never a shared flor.store.

    Then the notes history only this clone has is squashed into one commit of the same
    notes (every record is kept: the notes tree is what counts; what a remote already
    has stays as it is, so the next push is a fast-forward), and git's loose objects are
    packed.
    """
    from flor_cli.services import gc
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()  # a crashed run's checkpoints are referenced once it is a note
    for done in gc.gc(git, gc.Options(keep_last, dry_run, keep_history)):
        click.echo(f"flor gc: {done.line}")
