"""``flor lint [SCRIPTS...]``"""

from __future__ import annotations

import sys

import click


@click.command("lint")
@click.argument("scripts", nargs=-1)
def command(scripts: tuple[str, ...]) -> None:
    """Check flor calls in SCRIPTS for problems that break recording or replay.

    Prints `path:line:col: CODE message` for each problem; exits 1 when there is any.
    Files that do not import flor are skipped. Without SCRIPTS: the .py files git
    tracks that import flor. The pre-commit hook `flor-lint` runs this.

    \b
    FL000  the file does not parse
    FL001  a flor.log/arg/loop name that is not a string literal
    FL002  one name logged at different levels (before/in/nested in/after the main loop)
    FL003  a flor.loop holding a nested flor.loop, outside `with flor.checkpointing()`
    """
    from flor_cli.services import lint

    if scripts:
        paths = list(scripts)
    else:
        from flor_cli.storage.git import Git

        paths = lint.tracked_scripts(Git.discover("."))
    findings = lint.lint_files(paths)
    for finding in findings:
        click.echo(str(finding))
    sys.exit(1 if findings else 0)
