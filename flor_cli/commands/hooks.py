"""``flor hooks install | uninstall | status`` (and ``run``, which the hook scripts call)"""

from __future__ import annotations

import click

from flor_cli.output import chosen_format, output_options, render


@click.group("hooks")
def command() -> None:
    """Install, remove or inspect the git hooks that share runs.

    With the hooks installed, `git push` also pushes runs (flor.shadow and
    refs/notes/flor) and `git pull` or switching branches merges the upstream
    remote's runs. Hooks already there keep working: flor's run them first.
    """


@command.command("install")
@output_options
def install(fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Install flor's hooks, chaining existing ones (core.hooksPath honoured)."""
    from flor_cli.services import hooks
    from flor_cli.storage.git import Git

    _show(hooks.install(Git.discover(".")), fmt_name, as_csv, as_json, as_markdown, tablefmt)


@command.command("uninstall")
@output_options
def uninstall(fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Remove flor's hooks and restore the hooks they chained."""
    from flor_cli.services import hooks
    from flor_cli.storage.git import Git

    _show(hooks.uninstall(Git.discover(".")), fmt_name, as_csv, as_json, as_markdown, tablefmt)


@command.command("status")
@output_options
def status(fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Show which of flor's hooks are installed and which chain an earlier hook."""
    from flor_cli.services import hooks
    from flor_cli.storage.git import Git

    _show(hooks.status(Git.discover(".")), fmt_name, as_csv, as_json, as_markdown, tablefmt)


@command.command("run", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(name: str, args: tuple[str, ...]) -> None:
    """What a hook script does for flor; always exits 0 (see services/hooks.py)."""
    from flor_cli.services import hooks

    line = hooks.run(name, list(args))
    if line:
        click.echo(line, err=True)


def _show(states, fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    rows = [(s.name, s.installed, s.chained) for s in states]
    click.echo(render(["hook", "installed", "chained"], rows,
                      chosen_format(fmt_name, as_csv, as_json, as_markdown), tablefmt))
