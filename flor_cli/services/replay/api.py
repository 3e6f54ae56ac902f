"""Replay as a library: make a plan, execute it, read back the new values.

Nothing here renders, asks or prints a plan: ``flor replay`` (commands/replay.py) and
``flor.replay`` in notebooks (runtime/api.py) show the plan, ask before running and show
the outcome each in their own way (sqlite-utils' split of ``db.py`` and ``cli.py``).
Replay options are keyword arguments, so callers pass what they have and new options
do not reorder anyone's call.
"""

from __future__ import annotations

from typing import Sequence

from flor_cli.services.replay.execute import Outcome
from flor_cli.services.replay.plan import Plan, make_plan
from flor_cli.storage.git import Git


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
        return run(git, plan, gpus=_gpu_list(gpus))
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


def _gpu_list(gpus: str | Sequence[str] | None) -> list[str]:
    if gpus is None:
        return []
    items = gpus.split(",") if isinstance(gpus, str) else [str(g) for g in gpus]
    return [g.strip() for g in items if g.strip()]
