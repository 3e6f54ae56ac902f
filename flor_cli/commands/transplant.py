"""``flor transplant NAMES --from NEW.py --into OLD.py [-o OUT]``"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("transplant")
@click.argument("names")
@click.option("--from", "new_path", required=True, metavar="NEW.py",
              type=click.Path(exists=True, dir_okay=False),
              help="The script that has the flor.log statements (usually today's).")
@click.option("--into", "old_path", required=True, metavar="OLD.py",
              type=click.Path(exists=True, dir_okay=False),
              help="The version of the script to put them in.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the result here instead of to stdout.")
def command(names: str, new_path: str, old_path: str, output: str | None) -> None:
    """Insert NEW.py's flor.log statements for NAMES into OLD.py and print the result.

    NAMES is comma-separated. Each statement goes where a person would put it: in the
    block of OLD.py that corresponds to its block today, after the line it follows
    today, with variables renamed since then renamed back. OLD.py's own lines are
    kept byte for byte; a name OLD.py already logs at the same level is left alone.
    When a statement has no place in OLD.py, nothing is printed and the exit status is 2.
    """
    from flor_cli.services.replay.transplant import transplant

    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        raise click.UsageError("NAMES is empty")
    result = transplant(wanted, _source(new_path), _source(old_path),
                        new_path=new_path, old_path=old_path)
    if output:
        Path(output).write_text(result)
    else:
        click.echo(result, nl=False)


def _source(path: str) -> str:
    """A script's text; a file that is not UTF-8 text (a binary) is the user's mistake."""
    from flor_cli.errors import UserError

    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a Python script (not UTF-8 text)") from None
