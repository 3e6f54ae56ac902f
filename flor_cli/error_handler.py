"""How every ``flor`` command ends when something goes wrong (pre-commit's shape).

* A :class:`UserError` (bad input or state the user can fix): its one line on stderr,
  exit status 2.
* Ctrl-C: ``flor: interrupted``, exit status 130.
* stdout's reader gone (``flor log | head -1``): nothing said, exit status 141, what a
  shell reports for git there (which SIGPIPE ends).
* Anything else is flor's fault, a failing git command included (flor chose it; a
  caller that knows a failure is the user's raises a UserError instead): one line on
  stderr pointing to a log file that holds the traceback, the failed git command's
  output and the versions of flor, Python and git, exit status 3. The log goes to
  ``.git/flor/logs/`` of the repository in the current directory, or to the temporary
  directory outside of one.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn

from flor_cli.errors import UserError

BUG_EXIT = 3
INTERRUPTED_EXIT = 130
STDOUT_CLOSED_EXIT = 128 + signal.SIGPIPE


@contextmanager
def error_handler() -> Iterator[None]:
    """Turn whatever escapes the block into one line on stderr and an exit status."""
    try:
        yield
    except UserError as e:
        _say(str(e))
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise SystemExit(INTERRUPTED_EXIT) from None
    except BrokenPipeError as e:  # e.g. stdout's last flush, as the command ended
        stdout_closed(e)
    except Exception as e:  # noqa: BLE001 - the point of this handler
        if (problem := environment_problem(e)) is not None:
            _say(problem)
            raise SystemExit(UserError.exit_code) from None
        try:
            where = f"details in {write_log(e)}"
        except Exception as failed:  # noqa: BLE001 - never hide the original error
            where = f"and no log could be written ({failed})"
        _say(f"unexpected error (a bug in flor): {type(e).__name__}: {_first_line(e)}; "
             f"{where}")
        raise SystemExit(BUG_EXIT) from None


def stdout_closed(error: BrokenPipeError) -> NoReturn:
    """End at once, quietly, when the reader of stdout went away (``flor log | head``):
    stdout goes to /dev/null, so the interpreter's last flush fails no more. A broken
    pipe that is not stdout (a worker's) is a bug, raised as one: click's ``main`` would
    turn a BrokenPipeError into exit 1 without a word."""
    if not _reader_gone(sys.stdout):
        raise RuntimeError(f"broken pipe: {error}") from error
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(STDOUT_CLOSED_EXIT) from None


def _reader_gone(stream: object) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed: poll says POLLERR
    (Linux) or POLLHUP (the BSDs, macOS)."""
    import select

    try:
        poll = select.poll()
        poll.register(stream.fileno(), select.POLLOUT)  # type: ignore[attr-defined]
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


# What the machine, not flor, is to blame for: the user fixes it (frees space, makes
# the repository writable, gives a file back its permissions), so one line, exit 2.
_ENVIRONMENT = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def environment_problem(error: BaseException) -> str | None:
    """One line for a full disk, a read-only repository or a file flor may not read,
    whether Python or a git command ran into it; None for anything else."""
    if isinstance(error, OSError) and error.errno in _ENVIRONMENT:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    stderr = getattr(error, "stderr", None)  # a GitError: git said why
    if getattr(error, "command", None) and isinstance(stderr, str):
        reasons = [os.strerror(code) for code in _ENVIRONMENT]
        for line in reversed(stderr.strip().splitlines()):
            if any(reason in line for reason in reasons):
                return f"git {error.command[1]}: {line.strip()}"
    text = _first_line(error)  # e.g. libgit2 failing to write an object
    if any(os.strerror(code) in text for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)):
        return text
    return None


def write_log(error: BaseException) -> Path:
    """Write what a bug report needs about ``error`` to a new log file; its path."""
    import traceback

    directory = _log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    lines = [f"command: {' '.join(['flor', *sys.argv[1:]])}", f"cwd: {os.getcwd()}",
             *_versions(), ""]
    command = getattr(error, "command", None)  # a GitError: what git said, in full
    if command is not None:
        lines += [f"failed command: {' '.join(command)}",
                  f"exit code: {getattr(error, 'returncode', '?')}",
                  "stderr:", getattr(error, "stderr", "").rstrip(), ""]
    lines += traceback.format_exception(error)
    path.write_text("\n".join(line.rstrip("\n") for line in lines) + "\n")
    return path


def _log_dir() -> Path:
    from flor_cli.storage.git import Git

    try:
        return Git.discover(".").flor_dir / "logs"
    except Exception:  # noqa: BLE001 - not in a repository, or git itself is what fails
        import tempfile

        return Path(tempfile.gettempdir()) / "flor-logs"


def _versions() -> list[str]:
    import platform

    from flor_cli import __version__
    from flor_cli.storage.git import run_git

    try:
        git = run_git(["--version"], ".").stdout.strip()
    except Exception as e:  # noqa: BLE001
        git = f"unknown ({e})"
    return [f"flor: {__version__}", f"python: {sys.version.split()[0]} ({sys.executable})",
            f"platform: {platform.platform()}", f"git: {git}"]


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _say(message: str) -> None:
    print(f"flor: {message}", file=sys.stderr)
