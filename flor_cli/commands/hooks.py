"""``flor hooks install | uninstall | status`` (and ``run``, which the hook scripts call)"""

from __future__ import annotations

import click

from flor_cli.output import Output, output_options


@click.group("hooks")
def command() -> None:
    """Install, remove or inspect the git hooks that share runs.

    With the hooks installed, `git push` also pushes runs (flor.shadow and
    refs/notes/flor) and `git pull` or switching branches merges the upstream
    remote's runs. Hooks already there keep working: flor's run them first.
    """


@command.command("install")
@output_options
def install(out: Output) -> None:
    """Install flor's hooks, chaining existing ones (core.hooksPath honoured)."""
    from flor_cli.services import hooks
    from flor_cli.storage.git import Git

    _show(hooks.install(Git.discover(".")), out)


@command.command("uninstall")
@output_options
def uninstall(out: Output) -> None:
    """Remove flor's hooks and restore the hooks they chained."""
    from flor_cli.services import hooks
    from flor_cli.storage.git import Git

    _show(hooks.uninstall(Git.discover(".")), out)


@command.command("status")
@output_options
def status(out: Output) -> None:
    """Show which of flor's hooks are installed and which chain an earlier hook."""
    from flor_cli.services import hooks
    from flor_cli.storage.git import Git

    _show(hooks.status(Git.discover(".")), out)


@command.command("run", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(name: str, args: tuple[str, ...]) -> None:
    """What a hook script does for flor; always exits 0 (see services/hooks.py)."""
    from flor_cli.services import hooks

    line = hooks.run(name, list(args))
    if line:
        click.echo(line, err=True)


def _show(states, out: Output) -> None:
    rows = [(s.name, s.installed, s.chained) for s in states]
    click.echo(out.render(["hook", "installed", "chained"], rows))
