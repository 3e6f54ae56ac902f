"""The ``flor`` executable: click wiring only; each subcommand lives in ``commands/``.

Subcommands are imported when invoked, so ``flor --help`` and every command start fast;
the help listing uses the short texts below. Errors are handled in one place,
:mod:`flor_cli.error_handler`: a UserError (or a click usage error) is one line on stderr
and exit status 2, Ctrl-C 130, stdout closed by its reader 141 (quietly), anything
else 3 with a log file.

``flor run SCRIPT ...`` skips click altogether: everything after SCRIPT goes to the
script untouched, so there is nothing to parse, and importing click (60 ms here) would
delay the start of the training script by as much. The click group ``cli`` is built on
first use (``from flor_cli.main import cli`` still works).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flor_cli import __version__
from flor_cli.error_handler import error_handler, stdout_closed

COMMANDS = {
    "run": "Run a script and record the run (code, args, logs, checkpoints).",
    "log": "Show recorded runs, or FlorDB's pivot of logged values (--pivot).",
    "show": "Show one run in full.",
    "diff": "Compare two runs: args, summaries and code.",
    "query": "Run read-only SQL over the runs cache.",
    "replay": "Backfill flor.log statements into past runs by replay.",
    "transplant": "Insert a script's flor.log statements into another version of it.",
    "hooks": "Install, remove or inspect the git hooks that share runs.",
    "push": "Push runs (flor.shadow and refs/notes/flor) to a remote.",
    "pull": "Fetch and merge runs from a remote.",
    "check": "Exit non-zero when a run's values fail an expression (CI gate).",
    "lint": "Check flor calls in scripts for problems that break replay.",
    "completion": "Print the shell completion script (bash, zsh, fish).",
    "plot": "Plot logged values: one panel per name, one line per run.",
    "report": "Write one self-contained HTML page about the runs.",
    "export": "Write logged images and files out to a directory.",
    "watch": "Show flor log and refresh it as running runs log.",
    "tag": "Tag, name or annotate a run; list tags.",
    "rm": "Remove runs (undoable until flor gc).",
    "gc": "Delete checkpoint objects no run needs; report what was freed.",
    "sweep": "Queue runs of a script over a grid or random draws of --kwargs.",
    "serve": "Run queued jobs as recorded runs.",
    "queue": "Show queued jobs and their runs; retry failed ones.",
}


_cli: Any = None
COMPLETE_VAR = "_FLOR_COMPLETE"  # set by the shell script `flor completion SHELL` prints


def __getattr__(name: str) -> Any:
    if name == "cli":
        return _click_group()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _click_group() -> Any:
    """The ``flor`` click group, with subcommands imported when invoked."""
    global _cli
    if _cli is not None:
        return _cli
    import importlib
    import importlib.util

    import click

    class LazyGroup(click.Group):
        def list_commands(self, ctx: click.Context) -> list[str]:
            return list(COMMANDS)

        def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
            name = click.utils.make_str(args[0])
            if name not in COMMANDS and not name.startswith("-"):
                raise click.UsageError(_unknown_command(name), ctx)
            return super().resolve_command(ctx, args)

        def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
            if name not in COMMANDS:
                return None
            try:
                module = importlib.import_module(f"flor_cli.commands.{name}")
            except ModuleNotFoundError:
                return None
            if COMPLETE_VAR in os.environ:  # run ids, tags and names complete from the cache
                from flor_cli.commands.completion import attach

                attach(module.command)
            return module.command

        def invoke(self, ctx: click.Context) -> Any:
            try:
                return super().invoke(ctx)
            except BrokenPipeError as e:  # before click's main, which would exit 1
                stdout_closed(e)

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            available = [(n, h) for n, h in COMMANDS.items()
                         if importlib.util.find_spec(f"flor_cli.commands.{n}") is not None]
            with formatter.section("Commands"):
                formatter.write_dl(available)

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="flor")
    def cli() -> None:
        """flor: record ML training runs in git; backfill logs into them by replay."""

    _cli = cli
    return cli


def _plain_run(args: list[str]) -> bool:
    """``flor run SCRIPT ...``: what click would hand to ``run`` untouched (its
    arguments after SCRIPT are never parsed), so it can go without click."""
    return len(args) >= 2 and args[0] == "run" and not args[1].startswith("-")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    with error_handler():
        if _plain_run(args):
            from flor_cli.services import record

            code = record.run_script(args[1], args[2:])
            if argv is None:  # this process is `flor run`: nothing is left to do in it
                _leave(code)
            sys.exit(code)
        code = _click_main(args)
        sys.stdout.flush()  # here, where a reader that went away is taken quietly
    sys.exit(code if isinstance(code, int) else 0)


def _leave(code: int) -> None:
    """Exit without tearing the interpreter down: finalizing pygit2's and flor's modules
    takes 30-40 ms here, all of it after the script has ended, which ``flor run`` would
    add to every run. Everything the run wrote is on disk already (refs are moved by git
    processes, objects written by libgit2 as they are created, the journal removed);
    only Python's own buffers need flushing, and flor registers no atexit handlers."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _unknown_command(name: str) -> str:
    """``no such command 'lgo'; did you mean 'log'?`` (difflib, as git does)."""
    import difflib

    close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else " (see flor --help)"
    return f"no such command {name!r}{hint}"


def _click_main(args: list[str]) -> Any:
    import click

    if not args and COMPLETE_VAR not in os.environ:  # bare `flor`: the help, successfully
        group = _click_group()
        with click.Context(group, info_name="flor") as ctx:
            click.echo(group.get_help(ctx))
        return 0
    try:
        return _click_group().main(args=args, prog_name="flor", standalone_mode=False)
    except click.exceptions.NoSuchOption as e:
        print(f"flor: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except click.UsageError as e:
        cmd = f" {e.ctx.info_name}" if e.ctx is not None and e.ctx.parent is not None else ""
        print(f"flor{cmd}: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Abort as e:
        # click turns Ctrl-C into Abort; an interrupt still exits 130 as shells expect
        if isinstance(e.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        print("flor: aborted", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
