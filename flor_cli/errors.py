"""Errors the user can fix: one line on stderr, exit status 2 (see main.py).

Everything the user can get wrong raises UserError; the error handler
(:mod:`flor_cli.error_handler`) turns it into a single line on stderr and exit status 2.
Anything else is a bug: exit status 3, its traceback in a log file.
"""


class UserError(Exception):
    """Bad input or state the user can fix; the message is one line, shown as-is."""

    exit_code = 2


class NoPlace(UserError):
    """A hindsight statement has no place in an old version of the script."""


class NotARepo(UserError):
    """flor keeps everything in git, so it needs a repository to work in."""
