"""How ``flor serve`` and ``flor replay`` choose their engine: ``--ray [ADDRESS]``,
``--no-ray`` and ``--gpus-per-job``, defined once for both.

The command receives ``ray``: an address (``""`` = a local Ray for the command), None
(``git config flor.ray`` decides) or False (``--no-ray``: local processes whatever the
config says), as :func:`flor_cli.services.ray_engine.address` reads it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click


def ray_options(fn: Callable) -> Callable:
    options = [
        click.option("--ray", "ray", is_flag=False, flag_value="", default=None,
                     metavar="[ADDRESS]",
                     help="Run as Ray tasks on the cluster at ADDRESS (alone: a local Ray "
                          "for this command; put it last or write --ray=ADDRESS). Default: "
                          "git config flor.ray, else local processes."),
        click.option("--no-ray", "no_ray", is_flag=True,
                     help="Run as local processes even when git config flor.ray is set."),
        click.option("--gpus-per-job", type=click.FloatRange(min=0), default=0.0,
                     help="GPUs each Ray task asks for (num_gpus)."),
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("no_ray"):
            if kwargs["ray"] is not None:
                raise click.UsageError("--ray and --no-ray: choose one")
            kwargs["ray"] = False
        return fn(*args, **kwargs)

    for decorator in reversed(options):
        wrapper = decorator(wrapper)
    return wrapper
