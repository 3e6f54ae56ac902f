"""``flor run``: record a script's run under a supervisor that outlives it.

The supervisor (this process) snapshots the code and writes the journal header before
the script starts, runs the script with the current interpreter in the current directory
(stdout, stderr and exit status pass straight through), then folds the journal into a
note with the exit status, whatever way the script ended.

Everything the supervisor does before the script starts, and after it ends, adds to the
run's wall time; what it does in between runs beside the script on another core. So
start-up is kept to what must come first (the snapshot must show the code as it is when
the script starts, hence before it is spawned: the script's own modules are read by the
child later, at import), and what only the fold needs (pygit2) loads while the script
runs. ``flor run SCRIPT`` does not even import click (see ``main.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flor_cli.errors import UserError
from flor_cli.runtime import protocol
from flor_cli.runtime.args import split_kwargs
from flor_cli.runtime.announce import fold_and_report
from flor_cli.storage import journal
from flor_cli.storage.git import Git
from flor_cli.storage.objects import configured_store


def run_script(script: str, argv: list[str], name: str | None = None) -> int:
    """``flor run [--name NAME] SCRIPT ARGV...`` from the current directory: the
    script's exit status."""
    args, kwargs = split_kwargs(argv)
    return run(Git.discover("."), script, args, kwargs, name)


def run(git: Git, script: str, script_args: list[str], kwargs: dict[str, str],
        name: str | None = None) -> int:
    if not Path(script).is_file():
        raise UserError(f"no such script: {script}")
    if name is not None and (not name.strip() or " " in name or name == "latest"):
        raise UserError(f"--name {name!r}: not a run name (no spaces; not 'latest')")
    t0 = time.time()
    store = configured_store(git)  # a bad flor.store must fail before anything is written
    path = journal.begin(git, script, script_args, kwargs, supervisor=os.getpid(), name=name)
    env = protocol.record_env(protocol.RecordConfig(path, store.root, kwargs, t0))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the script's to handle
    try:
        proc = subprocess.Popen([sys.executable, script, *script_args], env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        journal.load_fold(git)  # while the script runs, not after it
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    fold_and_report(git, path, status=exit_status(code))
    return code if code >= 0 else 128 - code


def exit_status(code: int) -> dict:
    """The run header's status for a script's exit code (shared with flor serve)."""
    if code == 0:
        return {"status": "ok", "exit": 0}
    if code in (-signal.SIGINT, 130):
        return {"status": "interrupted", "exit": code}
    if code < 0:
        return {"status": "killed", "exit": code}
    return {"status": "failed", "exit": code}
