"""Sweeps: many runs of one script over combinations of ``--kwargs``, queued for serve.

``flor sweep train.py --grid lr=1e-3,1e-4 hidden=100,200`` queues the cross product (4
jobs); ``--random N name=LO:HI ...`` draws N combinations (uniform, integers when both
bounds are, ``LO:HI:log`` log-uniform, ``a,b,c`` a choice), crossed with the grid if both
are given; ``--kwargs k=v`` adds fixed values. FlorDB's ``flor.batch(flor.cross_prod(...))``
does the same from Python. Nothing runs here: ``flor serve`` runs the queue.

Imported by ``import flor`` (for ``batch`` and ``cross_prod``): module level stays light.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from flor_cli.errors import UserError


def cross_prod(**axes: Any) -> list[dict[str, Any]]:
    """Every combination of the axes' values, FlorDB's way: ``cross_prod(lr=[1e-3, 1e-4],
    hidden=(100, 200))`` is four dicts. A value that is not a list or tuple is one value."""
    names = list(axes)
    values = [list(v) if isinstance(v, (list, tuple, range)) else [v] for v in axes.values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def batch(configs: Iterable[dict[str, Any]], script: str | None = None,
          argv: Sequence[str] = ()) -> list[dict]:
    """Queue one job of ``script`` (default: the running script) per kwargs dict; the
    queued jobs (id, script, kwargs, argv, state). ``flor serve`` runs them."""
    import sys
    from pathlib import Path

    from flor_cli.services import queue
    from flor_cli.storage.git import Git

    script = script or sys.argv[0]
    if not script or not Path(script).is_file():
        raise UserError("flor.batch: name the script to queue (script='train.py')")
    return [j.as_dict() for j in queue.enqueue(Git.discover("."), script, list(configs), argv)]


@dataclass
class SweepSpec:
    grid: dict[str, list[str]] = field(default_factory=dict)
    random: int = 0
    ranges: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    kwargs: dict[str, str] = field(default_factory=dict)
    script_args: list[str] = field(default_factory=list)

    def configs(self) -> list[dict[str, str]]:
        """The kwargs of every job: grid x random draws, each with the fixed kwargs."""
        import random

        grid = cross_prod(**self.grid) if self.grid else [{}]
        draws: list[dict[str, str]] = [{}]
        if self.random:
            rng = random.Random(self.seed)
            draws = [{name: _draw(rng, name, spec) for name, spec in self.ranges.items()}
                     for _ in range(self.random)]
        return [{**self.kwargs, **g, **d} for g in grid for d in draws]


def parse(args: Sequence[str]) -> SweepSpec:
    """``[ARGS...] --grid k=v,v ... --random N k=LO:HI ... --seed S --kwargs k=v ...``;
    tokens before the first option (or after ``--``) are the script's own arguments."""
    spec = SweepSpec()
    section = None
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            spec.script_args += args[i + 1:]
            break
        if token in ("--grid", "--kwargs"):
            section = token
        elif token in ("--random", "--seed"):
            if i + 1 >= len(args):
                raise UserError(f"{token}: expected a number")
            number = _int(token, args[i + 1])
            if token == "--random":
                if number < 1:
                    raise UserError(f"--random {number}: must be at least 1")
                spec.random, section = number, token
            else:
                spec.seed, section = number, None
            i += 1
        elif token.startswith("--"):
            raise UserError(f"no such option: {token} (--grid, --random, --seed, --kwargs)")
        elif section is None:
            spec.script_args.append(token)
        else:
            name, sep, value = token.partition("=")
            if not sep or not name.strip() or not value:
                raise UserError(f"{section} {token!r}: expected name=value")
            name = name.strip()
            if section == "--grid":
                spec.grid[name] = value.split(",")
            elif section == "--random":
                _draw(__import__("random").Random(0), name, value)  # validate now
                spec.ranges[name] = value
            else:
                spec.kwargs[name] = value
        i += 1
    if not spec.grid and not spec.random:
        raise UserError("say what to sweep: --grid name=v1,v2 ... or --random N name=LO:HI ...")
    if spec.random and not spec.ranges:
        raise UserError(f"--random {spec.random}: name at least one range (name=LO:HI)")
    return spec


def _int(option: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{option} {text}: not an integer") from None


def _draw(rng, name: str, spec: str) -> str:
    """One value for ``name=spec``: LO:HI uniform (integers when both are), LO:HI:log
    log-uniform, a,b,c a choice. Text, as --kwargs values are."""
    if ":" not in spec:
        return rng.choice(spec.split(","))
    parts = spec.split(":")
    log = len(parts) == 3 and parts[2] == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise UserError(f"--random {name}={spec}: expected LO:HI or LO:HI:log")
    lo, hi = parts[0], parts[1]
    if not log and _is_int(lo) and _is_int(hi):
        if int(lo) > int(hi):
            raise UserError(f"--random {name}={spec}: LO is above HI")
        return str(rng.randint(int(lo), int(hi)))
    try:
        a, b = float(lo), float(hi)
    except ValueError:
        raise UserError(f"--random {name}={spec}: bounds must be numbers") from None
    if a > b or (log and a <= 0):
        raise UserError(f"--random {name}={spec}: "
                        + ("log bounds must be positive" if log and a <= 0 else "LO is above HI"))
    value = math.exp(rng.uniform(math.log(a), math.log(b))) if log else rng.uniform(a, b)
    return repr(value)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
