"""``flor plot`` / ``flor.plot``: logged values as curves, one panel per name.

A name logged inside loops is a curve per run: x is its loop's index, or a flattened
global step (0, 1, 2, ... in loop order) when it was logged in nested loops, or the index
of the loop ``--x`` names (values averaged per index). A name logged once per run (a final
accuracy) is points, one per run, against an arg. Each run's label is made of the args
that differ between the plotted runs (``--by`` picks them), so a legend says ``lr=0.01``
rather than a run id; values backfilled by replay are drawn alike and marked
``(replayed)``. The data (:func:`panels`) is shared with ``flor report``; matplotlib is
imported only to draw (:func:`figure`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

from flor_cli.errors import UserError
from flor_cli.services import query
from flor_cli.storage.cache import quote_literal
from flor_cli.storage.git import Git

REPLAYED = " (replayed)"
FILE_SUFFIXES = (".png", ".svg", ".pdf")


@dataclass
class Series:
    run: str
    label: str
    x: list[float]
    y: list[float]
    replayed: bool = False


@dataclass
class Panel:
    name: str
    kind: str  # "curve": a line per run; "points": a value per run against an arg
    xlabel: str
    series: list[Series] = field(default_factory=list)
    xticks: list[str] | None = None  # category names, when x is a non-numeric arg


@dataclass
class Runs:
    """The selected runs, in time order, with their args and the args that tell them apart."""

    ids: list[str]
    args: dict[str, dict[str, Any]]
    differing: list[str]
    tags: dict[str, list[str]] = field(default_factory=dict)

    def label(self, run: str, by: Sequence[str] = ()) -> str:
        """The args that tell the run apart, then its tags (``lr=0.1 [best]``); the run id
        when it has neither."""
        keys = list(by) or self.differing
        values = self.args.get(run, {})
        told = ", ".join(f"{k}={_text(values[k])}" for k in keys if k in values)
        tags = " ".join(self.tags.get(run, ()))
        return (f"{told} [{tags}]" if told and tags else told or tags) or run


def select_runs(git: Git, where: str | None = None, table: query.Table | None = None) -> Runs:
    """The runs ``--where`` (SQL over ``flor log``'s columns) selects, or those of ``table``
    (what ``query.runs`` gave for it already)."""
    rows = (table or query.runs(git, where))[1]
    ids = [row[0] for row in reversed(rows)]  # oldest first (flor log lists newest first)
    args: dict[str, dict[str, Any]] = defaultdict(dict)
    chosen = set(ids)
    for run, name, value in query.sql(git, "SELECT run, name, value FROM args")[1]:
        if run in chosen:
            args[run][name] = value
    names = list(dict.fromkeys(n for run in ids for n in args[run]))
    differing = [n for n in names
                 if len({json.dumps(args[run].get(n), sort_keys=True) for run in ids}) > 1]
    tags: dict[str, list[str]] = defaultdict(list)
    for run, tag in query.sql(git, "SELECT run, tag FROM tags ORDER BY tag")[1]:
        if run in chosen:
            tags[run].append(tag)
    return Runs(ids, dict(args), differing, dict(tags))


def panels(git: Git, names: Sequence[str], where: str | None = None, x: str | None = None,
           by: Sequence[str] = (), runs: Runs | None = None) -> list[Panel]:
    """One panel per name over the runs ``where`` selects."""
    names = query.split_names(names)
    if not names:
        raise UserError("name at least one logged value to plot")
    kinds: dict[str, set[str]] = defaultdict(set)
    for name, kind in query.sql(git, "SELECT name, kind FROM names")[1]:
        kinds[name].add(kind)
    unknown = [n for n in names if not kinds[n] & {"loop", "run"}]
    if unknown:
        raise UserError(f"nothing logged under {', '.join(map(repr, unknown))}")
    runs = runs or select_runs(git, where)
    known_args = {a for values in runs.args.values() for a in values}
    missing = [b for b in by if b not in known_args]
    if missing:
        raise UserError(f"--by: no arg named {', '.join(map(repr, missing))}")
    values = _values(git, names, runs.ids)
    result = []
    for name in names:
        per_run = values.get(name, {})
        if "loop" in kinds[name]:
            panel = _curves(name, per_run, runs, x, by)
        else:
            panel = _points(name, per_run, runs, by)
        if not panel.series:
            raise UserError(f"no numeric values of {name!r} in the selected runs")
        result.append(panel)
    return result


_Points = dict[str, tuple[float, bool]]  # ctx text -> (value, replayed): current values


def _values(git: Git, names: Sequence[str], runs: list[str]) -> dict[str, dict[str, _Points]]:
    """name -> run -> the numeric values of its records."""
    chosen = set(runs)
    out: dict[str, dict[str, _Points]] = defaultdict(lambda: defaultdict(dict))
    _, rows = query.sql(git, "SELECT run, name, value, ctx, rp IS NOT NULL FROM current_logs "
                             f"WHERE name IN ({','.join(map(quote_literal, names))}) "
                             "AND typeof(value) IN ('integer', 'real') ORDER BY run, seq")
    for run, name, value, ctx, replayed in rows:
        if run in chosen:
            out[name][run][ctx or "{}"] = (value, bool(replayed))
    return out


def _curves(name: str, per_run: dict[str, _Points], runs: Runs, x: str | None,
            by: Sequence[str]) -> Panel:
    contexts = {ctx: json.loads(ctx) for points in per_run.values() for ctx in points}
    loops = list(dict.fromkeys(k for parsed in contexts.values() for k in parsed))
    if x is not None:
        if per_run and x not in loops:
            raise UserError(f"--x: {name!r} was not logged inside a loop named {x!r} "
                            f"(its loops: {', '.join(loops)})")
        xlabel = x
    elif len(loops) == 1:
        xlabel = loops[0]
    else:
        xlabel = f"global step ({', '.join(loops)})"
    panel = Panel(name, "curve", xlabel)
    for run in runs.ids:
        # a value the run logged outside every loop has no place on a curve's x
        points = {c: v for c, v in per_run.get(run, {}).items() if contexts[c]}
        if not points:
            continue
        replayed = any(r for _, r in points.values())
        if x is not None:
            xs, ys = _averaged_by(x, points, contexts)
        else:
            order = sorted(points, key=lambda c: tuple(contexts[c].get(k, -1) for k in loops))
            xs = ([contexts[c][loops[0]] for c in order] if len(loops) == 1
                  else list(range(len(order))))
            ys = [points[c][0] for c in order]
        if xs:
            label = runs.label(run, by) + (REPLAYED if replayed else "")
            panel.series.append(Series(run, label, xs, ys, replayed))
    return panel


def _averaged_by(loop: str, points: _Points, contexts: dict[str, dict]
                 ) -> tuple[list[float], list[float]]:
    groups: dict[int, list[float]] = defaultdict(list)
    for ctx, (value, _) in points.items():
        index = contexts[ctx].get(loop)
        if index is not None:
            groups[index].append(value)
    xs = sorted(groups)
    return xs, [sum(groups[i]) / len(groups[i]) for i in xs]


def _points(name: str, per_run: dict[str, _Points], runs: Runs, by: Sequence[str]) -> Panel:
    """A value per run against the first ``--by`` arg (else the first that differs)."""
    arg = (list(by) or runs.differing or [None])[0]
    chosen = [run for run in runs.ids if per_run.get(run)]
    finals = {run: list(per_run[run].values())[-1] for run in chosen}
    xs_of: dict[str, float] = {}
    ticks = None
    if arg is None:
        xs_of = {run: i for i, run in enumerate(chosen)}
    else:
        raw = {run: runs.args.get(run, {}).get(arg) for run in chosen}
        if all(isinstance(v, (int, float)) for v in raw.values()):
            xs_of = dict(raw)  # type: ignore[arg-type]
        else:
            ticks = sorted({_text(v) for v in raw.values()})
            xs_of = {run: ticks.index(_text(v)) for run, v in raw.items()}
    panel = Panel(name, "points", arg or "run", xticks=ticks)
    for replayed in (False, True):
        group = [run for run in chosen if finals[run][1] == replayed]
        if group:
            panel.series.append(Series(
                "", name + (REPLAYED if replayed else ""),
                [xs_of[run] for run in group], [finals[run][0] for run in group], replayed))
    return panel


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def figure(panel_list: Sequence[Panel]):
    """A matplotlib Figure (no pyplot, no global state: shown inline by Jupyter)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = 1 if len(panel_list) == 1 else 2
    rows = (len(panel_list) + columns - 1) // columns
    fig = Figure(figsize=(6.4 * columns, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panel_list):
        for series in panel.series:
            if panel.kind == "curve":
                ax.plot(series.x, series.y, label=series.label,
                        marker="." if len(series.x) < 30 else None)
            else:
                ax.scatter(series.x, series.y, label=series.label)
        if panel.kind == "curve":  # loop indices: no ticks between iterations
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.name)
        ax.set_xlabel(panel.xlabel)
        if panel.xticks is not None:
            ax.set_xticks(range(len(panel.xticks)), panel.xticks)
        if 0 < len(panel.series) <= 20:
            ax.legend(fontsize="small")
    for ax in axes[len(panel_list):]:
        ax.set_visible(False)
    return fig


def save(panel_list: Sequence[Panel], path: str) -> None:
    """Write the figure to ``path`` (.png, .svg or .pdf), whole or not at all."""
    import io
    from pathlib import Path

    from flor_cli.storage.atomic import write_whole

    target = Path(path)
    if target.suffix.lower() not in FILE_SUFFIXES:
        raise UserError(f"-o: write a {', '.join(FILE_SUFFIXES)} file, not {path!r}")
    if not target.parent.resolve().is_dir():
        raise UserError(f"-o: no such directory: {target.parent}")
    buffer = io.BytesIO()
    figure(panel_list).savefig(buffer, format=target.suffix.lower()[1:], dpi=100)
    write_whole(target, buffer.getvalue())
