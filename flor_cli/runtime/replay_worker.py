"""How a replay worker runs the old script: ``python -m flor_cli.runtime.replay_worker
SCRIPT ARGS...``, as ``python SCRIPT ARGS...`` would, minus the interpreter's teardown.

A torch process spends about 0.6 s after its last ``atexit`` handler freeing modules and
objects, which is a tenth of a memoized replay and of no use to one: what a worker
leaves behind is its journal, which the session closes in its ``atexit`` handler. So when
the script ends well, the worker does what a normal exit does up to that point (join
non-daemon threads, run the ``atexit`` handlers, flush stdout and stderr) and then ends
the process at once with the script's exit status. A script that raises takes the
ordinary path, traceback and all.

The script runs as ``__main__`` with ``sys.argv`` and ``sys.path[0]`` as ``python SCRIPT``
sets them (``runpy.run_path``), so ``if __name__ == "__main__"``, pickling classes
defined in it, and imports of its sibling modules behave as they did when it was recorded.

A worker does not outlive the ``flor replay`` that started it (kill -9 included): on
Linux the kernel kills it when its parent dies (``PR_SET_PDEATHSIG``); elsewhere a
thread notices its parent is gone within a second.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import threading
import time

from flor_cli.runtime.protocol import REPLAY, ReplayConfig


def main(script: str, args: list[str], parent: int | None = None) -> None:
    """Run ``script`` and end the process; ``parent``: the process whose end ends this
    one (default: the ``flor replay`` of the job, else whoever started this process; a
    worker forked by :mod:`flor_cli.runtime.replay_fork`: that server)."""
    if parent is None:
        job = os.environ.get(REPLAY)
        parent = (ReplayConfig.from_json(job).parent if job else None) or os.getppid()
    die_with(parent)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = _exit_status(e)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def die_with(parent: int) -> None:
    """End this process when ``parent`` does: its replay has nobody to hand records to."""
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1)
            os._exit(1)

        threading.Thread(target=watch, name="flor-parent", daemon=True).start()


def _exit_status(exit: SystemExit) -> int:
    """The status ``SystemExit(code)`` gives the process, message printed as Python does."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
