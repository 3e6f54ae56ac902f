"""``flor sweep SCRIPT [ARGS...] --grid k=v,v ... | --random N k=LO:HI ... [--seed S]
[--kwargs k=v ...]``"""

from __future__ import annotations

import click

from flor_cli.output import render


@click.command("sweep", context_settings={"ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
@click.argument("script")
@click.argument("spec", nargs=-1, type=click.UNPROCESSED)
def command(script: str, spec: tuple[str, ...]) -> None:
    """Queue one run of SCRIPT per combination of --kwargs; `flor serve` runs them.

    --grid name=v1,v2 ... queues the cross product of the values. --random N
    name=LO:HI ... draws N combinations (uniform; integers when both bounds are;
    LO:HI:log log-uniform; a,b,c a choice), reproducibly with --seed S; with --grid
    too, each draw is crossed with the grid. --kwargs k=v ... are fixed for every job.
    Arguments before the first option (or after --) go to the script. Every job runs
    the code as it is now, even if you change it before it runs.
    """
    from flor_cli.services import queue, sweep
    from flor_cli.storage.git import Git

    parsed = sweep.parse(list(spec))
    jobs = queue.enqueue(Git.discover("."), script, parsed.configs(), parsed.script_args)
    click.echo(render(["job", "kwargs"],
                      [(j.id, " ".join(f"{k}={v}" for k, v in j.kwargs.items())) for j in jobs],
                      "table"))
    click.echo(f"queued {len(jobs)} job{'s' if len(jobs) != 1 else ''}; run them with flor serve")
