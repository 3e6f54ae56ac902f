"""``flor replay NAME[,NAME...] [--where SQL] [--yes] [--dry-run] [--diff] [--workers N]
[--gpus LIST] [--rev REV]``"""

from __future__ import annotations

import sys

import click

from flor_cli.output import chosen_format, output_options, render


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
@click.option("--gpus", help="Comma-separated GPU ids, given to workers round-robin.")
@click.option("--rev", help="Take today's statements from this commit, not the worktree.")
@output_options
def command(names: tuple[str, ...], where: str | None, yes: bool, dry_run: bool,
            show_diff: bool, workers: int, gpus: str | None, rev: str | None,
            fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Backfill the flor.log statements for NAMEs into past runs by replaying them.

    Each selected run's code is checked out into a temporary worktree, today's
    statements are inserted into it, and it runs again from its checkpoints, only as
    far as the statements need: prefix statements stop at the main loop, outer-loop
    and suffix statements skip nested loops by restoring checkpoints, nested-loop
    statements re-run them (split across --workers). The new values are appended to
    each run's note; your worktree, index and branch are never touched.
    """
    from flor_cli.services.replay import api
    from flor_cli.storage.git import Git
    from flor_cli.storage.journal import fold_orphans

    fmt = chosen_format(fmt_name, as_csv, as_json, as_markdown)
    wanted = [n for name in names for n in name.split(",") if n]
    git = Git.discover(".")
    fold_orphans(git)
    frame = api.replay(git, wanted, where=where, yes=yes, workers=workers,
                       gpus=gpus, dry_run=dry_run, rev=rev, show_diff=show_diff, fmt=fmt,
                       tablefmt=tablefmt, out=click.echo)
    if not frame.empty:
        click.echo(render(list(frame.columns), frame.itertuples(index=False), fmt, tablefmt))
    if frame.attrs.get("failed"):
        sys.exit(1)
