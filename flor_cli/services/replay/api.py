"""Replay end to end: plan, show, confirm, execute, and the new values as a DataFrame.

Shared by ``flor replay`` and ``flor.replay`` in notebooks, so both show the same plan
and ask the same question. The plan goes to ``out`` (stdout), progress and the question
to stderr; nothing is written before the question is answered.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Callable, Sequence

from flor_cli.errors import UserError
from flor_cli.output import render
from flor_cli.services.replay.plan import Plan, make_plan
from flor_cli.storage.git import Git


def replay(git: Git, names: Sequence[str], where: str | None = None, yes: bool = False,
           workers: int = 1, gpus: str | Sequence[str] | None = None, dry_run: bool = False,
           rev: str | None = None, *, verify: bool = True, show_diff: bool = False,
           fmt: str = "table",
           tablefmt: str = "simple", out: Callable[[str], None] = print):
    """Backfill ``names`` into the selected runs; the new values (FlorDB's pivot).

    Runs whose replay failed are left as they were and listed, with the reason, in the
    frame's ``attrs["failed"]`` (run -> reason).
    """
    plan = make_plan(git, names, where=where, workers=workers, rev=rev, verify=verify)
    out(render(*plan.table(), fmt, tablefmt))
    if show_diff:
        out(diffs(plan))
    runnable = plan.runnable
    if not runnable:
        raise UserError("none of the selected runs can be replayed (see the plan's notes)")
    what = f"{len(runnable)} run{'s' if len(runnable) != 1 else ''} (~{plan.seconds:.0f} s)"
    if dry_run:
        _say(f"dry run: would replay {what}")
        import pandas as pd

        return pd.DataFrame(columns=["run", *plan.names])
    if not yes:
        _confirm(f"Replay {what}?")

    from flor_cli.services import query
    from flor_cli.services.replay.execute import execute
    from flor_cli.storage.cache import quote_literal

    # pandas (~0.5 s) is only needed for the result: import it while the workers run
    # (they are other processes), not in front of them.
    preload = threading.Thread(target=importlib.import_module, args=("pandas",), daemon=True)
    preload.start()
    outcome = execute(git, plan, gpus=_gpu_list(gpus))
    preload.join()
    import pandas as pd

    frame = pd.DataFrame(columns=["run", *plan.names])
    for run, why in outcome.failed.items():
        _say(f"flor: replay of run {run} failed: {why}")
    if outcome.done:
        in_runs = ", ".join(quote_literal(r) for r in outcome.done)
        columns, rows = query.pivot(git, plan.names, where=f"run IN ({in_runs})")
        frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["failed"] = dict(outcome.failed)
    return frame


def diffs(plan: Plan) -> str:
    """The transplant into each distinct version of the code, once per version."""
    from flor_cli.services.replay.transplant import diff

    seen: dict[tuple[str, str], list[str]] = {}
    for job in plan.runnable:
        seen.setdefault((job.script, job.version), []).append(job.run)
    parts = []
    for job in plan.runnable:
        runs = seen.pop((job.script, job.version), None)
        if runs is not None:
            parts.append(f"# {job.script} @ {job.version[:7]} (runs: {', '.join(runs)})\n"
                         + (diff(job.old_source, job.source, job.script) or "(no change)\n"))
    return "".join(parts).rstrip("\n")


def _confirm(question: str) -> None:
    import click

    if not sys.stdin.isatty():
        raise UserError("replay asks before running and there is no terminal to ask on: "
                        "pass --yes (yes=True)")
    if not click.confirm(question, default=False, err=True):
        raise click.exceptions.Abort()


def _gpu_list(gpus: str | Sequence[str] | None) -> list[str]:
    if gpus is None:
        return []
    items = gpus.split(",") if isinstance(gpus, str) else [str(g) for g in gpus]
    return [g.strip() for g in items if g.strip()]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
