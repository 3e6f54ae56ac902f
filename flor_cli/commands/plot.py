"""``flor plot NAME... [--where SQL] [--x LOOP] [--by ARG...] [-o FILE]``"""

from __future__ import annotations

import shutil
import sys

import click


@click.command("plot")
@click.argument("names", nargs=-1, required=True)
@click.option("--where", help="SQL condition over `flor log`'s columns: which runs to plot.")
@click.option("--x", "x", metavar="LOOP",
              help="x is this loop's index (values averaged per index); default: the "
                   "name's own loop, or a global step over nested loops.")
@click.option("--by", "by", multiple=True, metavar="ARG",
              help="Label runs by these args (repeatable); default: the args that differ.")
@click.option("-o", "--output", "output", metavar="FILE",
              help="Write a .png, .svg or .pdf file instead of drawing in the terminal.")
def command(names: tuple[str, ...], where: str | None, x: str | None, by: tuple[str, ...],
            output: str | None) -> None:
    """Plot logged values: one panel per NAME, one line per run.

    A NAME logged inside loops is a curve per run against its loop index; one logged
    once per run is points against an arg. Runs are labelled by the args that differ
    between them; values backfilled by replay are marked (replayed). NAMEs may also be
    comma-separated.
    """
    from flor_cli.services import plot
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    panels = plot.panels(git, names, where, x, list(by))
    if output:
        plot.save(panels, output)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(_in_terminal(panels))


def _in_terminal(panels) -> str:
    """The panels drawn with text (plotext), one under the other, as wide as the terminal."""
    import plotext as plt

    width, height = shutil.get_terminal_size((100, 30))
    drawn = []
    for panel in panels:
        plt.clf()
        plt.plotsize(min(width, 160), max(15, min(height - 2, 24)))
        plt.title(panel.name)
        plt.xlabel(panel.xlabel)
        draw = plt.plot if panel.kind == "curve" else plt.scatter
        for series in panel.series:
            draw(series.x, series.y, label=series.label)
        if panel.xticks is not None:
            plt.xticks(list(range(len(panel.xticks))), panel.xticks)
        drawn.append(plt.build())
    text = "\n".join(drawn)
    return text if sys.stdout.isatty() else plt.uncolorize(text)  # no colour codes in a pipe
