"""The ``flor`` executable: click wiring only; each subcommand lives in ``commands/``.

Subcommands are imported when invoked, so ``flor --help`` and every command start fast;
the help listing uses the short texts below. Errors are handled in one place: a
UserError (or a click usage error) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from flor_cli import __version__
from flor_cli.errors import UserError

COMMANDS = {
    "run": "Run a script and record the run (code, args, logs, checkpoints).",
    "log": "Show recorded runs, or FlorDB's pivot of logged values (--pivot).",
    "show": "Show one run in full.",
    "query": "Run read-only SQL over the runs cache.",
    "replay": "Backfill flor.log statements into past runs by replay.",
    "transplant": "Insert a script's flor.log statements into another version of it.",
    "hooks": "Install, remove or inspect the git hooks that share runs.",
    "push": "Push runs (flor.shadow and refs/notes/flor) to a remote.",
    "pull": "Fetch and merge runs from a remote.",
    "check": "Exit non-zero when a run's values fail an expression (CI gate).",
    "lint": "Check flor calls in scripts for problems that break replay.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"flor_cli.commands.{name}")
        except ModuleNotFoundError:
            return None
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        available = [(n, h) for n, h in COMMANDS.items()
                     if importlib.util.find_spec(f"flor_cli.commands.{n}") is not None]
        with formatter.section("Commands"):
            formatter.write_dl(available)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flor")
def cli() -> None:
    """flor: record ML training runs in git; backfill logs into them by replay."""


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="flor", standalone_mode=False)
    except UserError as e:
        print(f"flor: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click.exceptions.NoSuchOption as e:
        print(f"flor: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except click.UsageError as e:
        cmd = f" {e.ctx.info_name}" if e.ctx is not None and e.ctx.parent is not None else ""
        print(f"flor{cmd}: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt) as e:
        # click turns Ctrl-C into Abort; an interrupt still exits 130 as shells expect
        interrupted = isinstance(e, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt)
        print("flor: interrupted" if interrupted else "flor: aborted", file=sys.stderr)
        sys.exit(130 if interrupted else 1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
