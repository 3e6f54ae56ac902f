"""Replay as a library: make a plan, execute it, read back the new values.

:func:`replay` is the one flow of ``flor replay`` (commands/replay.py) and ``flor.replay``
in notebooks (runtime/api.py): plan, show, confirm, execute, report, new values. It
decides what is said and when; nothing here renders, asks or prints: each caller passes
how it shows a plan, asks and writes a line (sqlite-utils' split of ``db.py`` and
``cli.py``). Replay options are keyword arguments, so callers pass what they have and
new options do not reorder anyone's call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from flor_cli.cores import gpu_ids
from flor_cli.errors import UserError
from flor_cli.services.replay.execute import Outcome
from flor_cli.services.replay.plan import Plan, make_plan
from flor_cli.storage.git import Git


@dataclass
class Replayed:
    """What :func:`replay` did: its plan; once runs were replayed, the outcome and the
    replayed names' new values (FlorDB's pivot of the runs that were replayed)."""

    plan: Plan
    outcome: Outcome | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        """Run -> why its replay failed."""
        return dict(self.outcome.failed) if self.outcome is not None else {}


def replay(git: Git, names: Sequence[str], *, show: Callable[[Plan], None],
           confirm: Callable[[str], None] | None, tell: Callable[[str], None],
           warn: Callable[[str], None], dry_run: bool = False,
           gpus: str | Sequence[str] | None = None, ray: str | bool | None = None,
           gpus_per_job: float = 0.0, **options: Any) -> Replayed:
    """Plan the replay of ``names``, show the plan, confirm, execute, report: ``flor
    replay`` and ``flor.replay``. ``options`` are :func:`plan`'s; ``gpus``, ``ray`` and
    ``gpus_per_job`` are :func:`execute`'s.

    The caller says how: ``show`` renders the plan; ``confirm`` asks the question and
    raises when the answer is no (None: do not ask); ``tell`` takes why nothing runs
    (nothing to do, a dry run); ``warn`` takes each line about a run that did not go as
    planned (a verification that failed, a failed run). Selected runs of which none
    can be replayed are a UserError.
    """
    chosen = plan(git, names, ray=ray, **options)
    nothing = Replayed(chosen, None, ["run", *chosen.names], [])
    if chosen.nothing:
        tell(f"nothing to do: {chosen.nothing}")
        return nothing
    show(chosen)
    if not chosen.runnable:
        raise UserError("none of the selected runs can be replayed (see the plan's notes)")
    if dry_run:
        tell(f"dry run: would replay {summary(chosen)}")
        return nothing
    if confirm is not None:
        confirm(f"Replay {summary(chosen)}?")
    outcome = execute(git, chosen, gpus=gpus, ray=ray, gpus_per_job=gpus_per_job)
    for line in _report(outcome):
        warn(line)
    return Replayed(chosen, outcome, *new_values(git, chosen, outcome))


def _report(outcome: Outcome) -> Iterator[str]:
    """A line for each verification that failed and each run that failed."""
    for check in outcome.verified:
        if check.failed:
            yield (f"flor: verification of run {check.run} ({check.script}): "
                   f"{check.failed}; its code's runs were re-executed instead")
    for run, why in outcome.failed.items():
        yield f"flor: replay of run {run} failed: {why}"


def plan(git: Git, names: Sequence[str], *, where: str | None = None, workers: int = 1,
         rev: str | None = None, verify: bool = True, jobs: int | None = None,
         fork: bool = True, ray: str | bool | None = None) -> Plan:
    """Which runs, in which mode, at what estimated cost; nothing runs or is written.
    ``plan.nothing`` says why there is nothing to do; a skipped run's note says why.
    ``jobs`` runs are replayed at once (None: the cores // ``workers``); ``fork=False``
    starts every worker in a fresh interpreter; ``ray`` as :func:`execute` takes it (on
    Ray, every worker is a Ray task: no fork servers)."""
    from flor_cli.services import ray_engine

    return make_plan(git, names, where=where, workers=workers, rev=rev, verify=verify,
                     jobs=jobs, fork=fork, on_ray=ray_engine.address(git, ray) is not None)


def execute(git: Git, plan: Plan, *, gpus: str | Sequence[str] | None = None,
            ray: str | bool | None = None, gpus_per_job: float = 0.0) -> Outcome:
    """Replay the plan's runnable runs; a failed run is in ``outcome.failed``, not raised.

    On Ray when ``ray`` names an address ("" starts a local Ray for this call), else
    (``ray`` None) when ``git config flor.ray`` does; ``ray=False``: local processes.
    Each Ray worker is a task asking for ``gpus_per_job`` GPUs.
    """
    from flor_cli.services import ray_engine
    from flor_cli.services.replay.execute import execute as run

    address = ray_engine.address(git, ray)
    if address is None:
        return run(git, plan, gpus=gpu_ids(gpus))
    cluster = ray_engine.Cluster(address)
    launcher = ray_engine.RayReplay(cluster, git, plan, gpus_per_job)
    try:
        return run(git, plan, launch=launcher)
    finally:
        launcher.cancel()
        cluster.close()


def new_values(git: Git, plan: Plan, outcome: Outcome) -> tuple[list[str], list[tuple]]:
    """The replayed names of the runs that were replayed (FlorDB's pivot)."""
    from flor_cli.services import query
    from flor_cli.storage.cache import quote_literal

    if not outcome.done:
        return ["run", *plan.names], []
    in_runs = ", ".join(quote_literal(r) for r in outcome.done)
    return query.pivot(git, plan.names, where=f"run IN ({in_runs})")


def summary(plan: Plan) -> str:
    """``3 runs (~12 s)``: what confirming the plan starts."""
    n = len(plan.runnable)
    return f"{n} run{'s' if n != 1 else ''} (~{plan.seconds:.0f} s)"


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
