"""``flor diff RUN_A RUN_B``"""

from __future__ import annotations

import click

from flor_cli.output import Output, colour_wanted, output_options


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b", default="latest")
@click.option("--code/--no-code", default=True, show_default=True,
              help="Follow the table with the code diff (table format).")
@output_options
def command(run_a: str, run_b: str, code: bool, out: Output) -> None:
    """Compare two runs: their args and the summaries of their logged values side by
    side (changed rows marked *), then git's diff between the code each ran (their
    shadow commits). Paged on a terminal.

    RUN_A and RUN_B are run ids, unique prefixes, names or tags, or `latest`.
    """
    from flor_cli.services import query, show
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    columns, rows, commit_a, commit_b = show.diff(
        git, query.resolve_run(git, run_a), query.resolve_run(git, run_b))
    text = out.render(columns, rows)
    if code and out.fmt in ("table", "markdown") and commit_a and commit_b:
        patch = git.diff_commits(commit_a, commit_b, color=colour_wanted())
        text += "\n\n" + (patch.rstrip("\n") or "(the same code)")
    out.show(text)
