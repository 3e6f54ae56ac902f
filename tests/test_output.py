"""The table fast path of ``output.render`` prints exactly what tabulate prints of the
cells as a table shows them (control characters spelled out: ``output._visible``)."""

from __future__ import annotations

import random

import pytest
from tabulate import tabulate

from flor_cli import output

STYLES = sorted(output._FAST_STYLES)
VALUES = [None, 0, 1, -5, 10**20, 3.0, 0.1, 1e-05, -2.5e10, 1e16, 123456.789, -0.0, 5e-324,
          float("inf"), True, "", "abc", "run-1", "20261123-092341-000000", "x{y}", "~",
          "2026-11", "-", "a,b", "0.5", "1,000", "True", "nan", " pad ", "é", "a\nb",
          "\x1b[31mred\x1b[0m"]
HEADERS = ["a", "loss", "a_much_longer_header", "x y", "", "~", "{x}", "b|c", "é"]


def _tabulate(columns: list[str], rows: list[list], style: str) -> str:
    return tabulate([list(map(output._visible, row)) for row in rows],
                    headers=list(map(output._visible, columns)), tablefmt=style,
                    missingval="", disable_numparse=False)


def _random_table(rng: random.Random) -> tuple[list[str], list[list]]:
    kinds = [rng.sample(VALUES, rng.randint(1, 4)) for _ in range(rng.randint(1, 5))]
    rows = [[rng.choice(k) for k in kinds] for _ in range(rng.randint(0, 6))]
    return [rng.choice(HEADERS) for _ in kinds], rows


@pytest.mark.parametrize("style", STYLES + ["fancy_grid", "pretty", "rst"])
def test_render_matches_tabulate(style: str) -> None:
    rng = random.Random(style)
    fast = 0
    for _ in range(250):
        columns, rows = _random_table(rng)
        fmt = "markdown" if style == "github" else "table"
        assert output.render(columns, rows, fmt, style) == _tabulate(columns, rows, style)
        prepared = output._prepared(columns, rows, style)
        fast += prepared is not None and output._laid_out(columns, *prepared, style) is not None
    assert (fast > 10) == (style in output._FAST_STYLES)


def test_pivot_shaped_table_takes_the_fast_path() -> None:
    rng = random.Random(0)
    columns = ["run", "epoch", "lr", "batch_size", "loss"]
    rows = [[f"20261123-0923{r:02d}-{r:06x}", e, rng.choice([1e-4, 3e-3]), 64,
             rng.random() if e else None] for r in range(30) for e in range(10)]
    assert output._prepared(columns, rows, "simple") is not None
    for style in STYLES:
        assert output.render(columns, rows, "table", style) == _tabulate(columns, rows, style)
