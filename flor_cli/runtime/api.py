"""The in-script API, with FlorDB's names: arg, log, loop, checkpointing, commit, and the
read side (dataframe, query, replay, plot) for notebooks.

A run starts lazily, at the first call that needs one, so that ``import flor`` costs
nothing in a notebook. Which kind of run depends on how the script was started:

* under ``flor run`` (``FLOR_JOURNAL`` set): continue the journal the CLI created; the
  CLI folds it into a note with the script's exit status;
* under ``flor replay`` (``FLOR_REPLAY`` set): a replay session (see replay_mode);
* plain ``python train.py --kwargs ...``: snapshot and journal here, fold at exit.

The ``FLOR_*`` variables (:mod:`protocol`) are removed once read, so subprocesses the
script starts do not write into this run; forked children (DataLoader workers) stop
recording, and so do ``multiprocessing`` children started by spawn or forkserver: one
script, one run. The first call starts the run under a lock, so threads calling flor at
once share one run.
Under ``torchrun`` only rank 0 (``RANK``) records: one run, no duplicates.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from flor_cli.errors import UserError
from flor_cli.runtime import protocol
from flor_cli.runtime.args import MISSING, split_kwargs
from flor_cli.runtime.values import PLAIN_TYPES as _PLAIN
from flor_cli.runtime.session import Session
from flor_cli.storage.journal import repository_to_read

_session: Session | None = None
_disabled = False
_owner = None  # the Git of a run this process started itself (plain `python train.py`)
_failure: dict = {}
_argv_kwargs: dict[str, str] = {}


def _fail(message: str) -> None:
    print(f"flor: {message}", file=sys.stderr)
    raise SystemExit(2)


# sys.argv[0] is "-m" while `python -m flor ...` imports this package: those are the
# CLI's arguments, not a script's.
if "--kwargs" in sys.argv and sys.argv[0] != "-m" and not protocol.launched():
    try:
        sys.argv[1:], _argv_kwargs = split_kwargs(sys.argv[1:])
    except UserError as e:
        _fail(str(e))


_starting = threading.Lock()


def current_session() -> Session | None:
    """The run this process records or replays, started by the first call that needs
    one; None where flor records nothing here (a forked or multiprocessing child, a rank
    other than 0, no git repository)."""
    global _session
    if _session is None and not _disabled:
        with _starting:
            if _session is None and not _disabled:
                _session = _start()
    return _session


def _multiprocessing_child() -> bool:
    """A ``multiprocessing`` worker (spawn, forkserver): its parent is the run."""
    mp = sys.modules.get("multiprocessing")
    return mp is not None and mp.parent_process() is not None


def _not_rank_0() -> bool:
    """torchrun (or any launcher that sets ``RANK``): rank 0 records the run; the other
    ranks' flor calls pass values through (arg still applies --kwargs), recording nothing."""
    return protocol.REPLAY not in os.environ and os.environ.get("RANK", "0") != "0"


def _start() -> Session | None:
    global _disabled, _owner
    from flor_cli.storage.objects import ObjectStore

    if _multiprocessing_child() or _not_rank_0():
        _disabled = True
        return None
    if (replay := protocol.take_replay()) is not None:
        from flor_cli.runtime.replay_mode import ReplaySession

        session: Session = ReplaySession(replay, ObjectStore(Path(replay.store), replay.remote))
    elif (record := protocol.take_record()) is not None:
        session = Session(record.journal, ObjectStore(record.store), record.kwargs, record.t0)
    else:
        from flor_cli.errors import NotARepo
        from flor_cli.storage import journal
        from flor_cli.storage.git import Git
        from flor_cli.storage.objects import configured_store

        t0 = process_start()
        try:
            git = Git.discover(Path.cwd())
        except NotARepo as e:
            print(f"flor: {e}; this run is not recorded", file=sys.stderr)
            _disabled = True
            return None
        # this process is the run's own supervisor: while it lives, nobody folds the journal
        path = journal.begin(git, sys.argv[0], sys.argv[1:], _argv_kwargs, supervisor=os.getpid())
        session = Session(path, configured_store(git), _argv_kwargs, t0)
        _owner = git
        _watch_exit()
    atexit.register(_finish)
    return session


def process_start() -> float:
    """When this process started (Linux), so that a plain ``python train.py`` run's
    prefix timing includes interpreter start and imports, as under ``flor run`` (whose
    supervisor passes its own start); replay's estimate counts on it. Elsewhere: now."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def _finish() -> None:
    """Flush and close the run at interpreter exit; fold it if this process owns it."""
    global _session, _owner
    session, _session = _session, None
    if session is None:
        return
    end: dict[str, Any] = {"end": time.time()}
    torch = sys.modules.get("torch")
    if torch is not None:
        end["torch"] = str(torch.__version__)  # a TorchVersion is not a plain str
    if _owner is not None:
        end.update(_failure or {"status": "ok", "exit": 0})
    session.close(end)
    if _owner is not None:
        from flor_cli.runtime.announce import fold_and_report

        fold_and_report(_owner, session.journal_path)
        _owner = None


def _watch_exit() -> None:
    """A plain ``python train.py`` run has no supervisor to report its exit status: an
    uncaught exception is seen by ``sys.excepthook``, an exit status by ``sys.exit``
    (``raise SystemExit(n)`` written out is not seen, and is recorded as ``ok``)."""
    previous_hook, previous_exit = sys.excepthook, sys.exit

    def hook(kind, value, tb):
        interrupted = issubclass(kind, KeyboardInterrupt)
        _failure.update(status="interrupted" if interrupted else "failed",
                        exit=130 if interrupted else 1, error=f"{kind.__name__}: {value}"[:500])
        previous_hook(kind, value, tb)

    def exit(status: object = None) -> None:
        if threading.current_thread() is threading.main_thread():  # else: ends a thread
            code = 0 if status is None else status if isinstance(status, int) else 1
            _failure.clear()
            if code != 0:
                _failure.update(status="failed", exit=code)
        previous_exit(status)

    sys.excepthook, sys.exit = hook, exit


def _after_fork_in_child() -> None:
    global _session, _disabled
    _session, _disabled = None, True


def start_afresh() -> None:
    """In a replay fork server's worker (runtime/replay_fork.py): this forked process is
    a new script, not a copy of one (the server never starts a run), so it may record."""
    global _session, _disabled
    _session, _disabled = None, False


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_name(api: str, name: Any) -> None:
    if type(name) is not str or not name:
        raise TypeError(f"flor.{api}: name must be a non-empty string, got {name!r}")


# -- recording -------------------------------------------------------------------------

def log(name: str, value: Any) -> Any:
    """Record ``value`` under ``name`` in the current loop context; returns ``value``."""
    session = _session
    if (session is not None and session.keeps_all and type(value) in _PLAIN
            and type(name) is str and name):
        session.queue.extend((name, value))  # the hot path (see session: the stream)
        return value
    return _log(name, value)


def _log(name: str, value: Any) -> Any:
    """Everything but the hot path: starting the run, bad names, replay, other types."""
    session = _session or current_session()
    if type(name) is not str or not name:
        _check_name("log", name)
    if session is not None:
        session.log(name, value)
    return value


def arg(name: str, default: Any = MISSING) -> Any:
    """A hyper-parameter: ``--kwargs name=value`` cast to ``type(default)``, else default
    (without a default, as in FlorDB, the value must come from ``--kwargs`` or replay)."""
    _check_name("arg", name)
    session = current_session()
    try:
        if session is None:  # not recording, but --kwargs still apply
            from flor_cli.runtime.args import resolve

            return resolve(name, _argv_kwargs, default)
        return session.arg(name, default)
    except UserError as e:
        if session is not None:
            session.abort()
        _fail(str(e))


def loop(name: str, iterable: Iterable) -> Iterator:
    """Yield from ``iterable``; records inside carry ``{name: index}`` in their context."""
    _check_name("loop", name)
    session = current_session()
    return iter(iterable) if session is None else session.loop(name, iterable)


class checkpointing:
    """``with flor.checkpointing(model=net, optimizer=opt):`` — what replay restores."""

    def __init__(self, **objects: Any):
        self.objects = objects
        self.session: Session | None = None

    def __enter__(self) -> "checkpointing":
        self.session = current_session()
        if self.session is not None:
            self.session.enter_checkpointing(self.objects)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.exit_checkpointing()


def commit() -> None:
    """End the current run now (notebooks); the next flor call starts a new one."""
    global _owner
    if _session is None:
        return
    if _owner is None:
        from flor_cli.storage.git import Git

        _owner = Git.discover(Path.cwd())
    _failure.clear()
    _finish()


# -- reading ---------------------------------------------------------------------------

def dataframe(*names: str):
    """FlorDB's pivot as a pandas DataFrame: one row per run x loop iteration. A logged
    image or file is a value a notebook displays (``_repr_png_``), with its ``path``.
    As in FlorDB, a name nothing logged is no error: its column is empty (and a frame of
    only such names has no rows)."""
    from flor_cli.services import files, query

    git = repository_to_read()
    try:
        frame = query.pivot_frame(git, list(names))
    except UserError:  # a name nothing logged
        import pandas as pd

        known = set(query.sql_frame(git, "SELECT name FROM names UNION SELECT name FROM args")
                    .iloc[:, 0])
        kept = [n for n in names if n in known]
        frame = query.pivot_frame(git, kept) if kept else pd.DataFrame(columns=["run"])
        for name in names:
            if name not in frame.columns:
                frame[name] = None
    return files.displayable(git, frame)


def plot(*names: str, where: str | None = None, x: str | None = None,
         by: Sequence[str] = ()):
    """``flor plot`` in a notebook: a matplotlib Figure, one panel per name."""
    from flor_cli.services import plot as service

    return service.figure(service.panels(repository_to_read(), list(names), where, x,
                                         list(by)))


def query(sql: str):
    """Read-only SQL over the cache's tables and views, as a pandas DataFrame."""
    from flor_cli.services import query as service

    return service.sql_frame(repository_to_read(), sql)


def replay(names: str | Sequence[str] = (), where: str | None = None, yes: bool = False, *,
           apply_vars: str | Sequence[str] = (), where_clause: str | None = None,
           **options: Any):
    """Backfill ``names`` into past runs by replay; returns the new values as a DataFrame.

    Shows the plan and asks first (``yes=True`` to skip the question; where there is no
    terminal, a piped answer is read). ``options``: those of ``services.replay.api.plan``
    (``workers``, ``jobs``, ``fork``, ``rev``, ``verify``, ``ray``), ``gpus`` and
    ``gpus_per_job``. Runs whose replay failed are said on stderr, as ``flor replay``
    says them, and listed with the reason in the frame's ``attrs["failed"]``.
    ``apply_vars`` and ``where_clause`` are FlorDB's names for ``names`` and ``where``.
    """
    names = names or apply_vars
    where = where if where is not None else where_clause
    import pandas as pd

    from flor_cli.prompt import confirmed
    from flor_cli.services.query import split_names
    from flor_cli.services.replay import api as service

    def show(plan: service.Plan) -> None:
        columns, rows = plan.table()
        print(pd.DataFrame(rows, columns=columns).to_string(index=False))

    def confirm(question: str) -> None:
        if not confirmed(question, skip_hint="yes=True"):
            raise UserError("replay not confirmed")

    if isinstance(names, str):
        names = split_names([names])
    done = service.replay(repository_to_read(), list(names), show=show,
                          confirm=None if yes else confirm, tell=print,
                          warn=lambda line: print(line, file=sys.stderr), where=where,
                          **options)
    frame = pd.DataFrame(done.rows, columns=done.columns)
    frame.attrs["failed"] = done.failed
    return frame
