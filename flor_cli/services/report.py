"""``flor report``: one self-contained HTML page about the runs.

The page needs no network and no server (it is meant to be opened from disk or from a CI
artifact): its style, its script (a small SVG chart renderer, ``report_assets/``) and its
data (JSON) are inline, and images are data URIs. It holds the runs table (sortable,
filterable), a chart per logged name across runs (the panels of ``flor plot``), each
final value against each arg that differs, logged images as thumbnails, and each code
version with the diff from the one before. Everything that came from notes is put on the
page as text by the script (escaped), never as markup.
"""

from __future__ import annotations

import base64
import json
import math
import time
from importlib import resources
from pathlib import Path
from typing import Any

from flor_cli.errors import UserError
from flor_cli.services import files, plot, query
from flor_cli.storage.atomic import write_whole
from flor_cli.storage.git import Git

MAX_IMAGES = 400             # thumbnails embedded; `flor export` writes all of them
MAX_IMAGE_BYTES = 4 << 20    # total bytes of embedded images
MAX_DIFF_CHARS = 40_000      # per code version
MAX_DIFFS_CHARS = 2_000_000  # all versions together: a page of 1,000 versions stays small
MAX_POINTS = 1_000           # per series in a chart; longer ones are thinned evenly


def build(git: Git, where: str | None = None) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data."""
    columns, rows = query.runs(git, where)
    runs = plot.select_runs(git, table=(columns, rows))
    commits = dict(query.sql(git, "SELECT run, commit_id FROM runs")[1])
    versions, version_of = _versions(git, [(run, commits[run]) for run in runs.ids])
    replayed: dict[str, list[str]] = {}
    for run, name in query.sql(git, "SELECT DISTINCT run, name FROM logs WHERE rp IS NOT NULL "
                                    "ORDER BY run, name")[1]:
        replayed.setdefault(run, []).append(name)
    table_rows = [[*map(_finite, row), version_of.get(row[0]), ", ".join(replayed.get(row[0], []))]
                  for row in rows]
    _, numeric = query.sql(git, "SELECT DISTINCT name FROM logs WHERE typeof(value) IN "
                                "('integer', 'real') ORDER BY name")
    names = [n for (n,) in numeric]
    panels = plot.panels(git, names, runs=runs) if names and runs.ids else []
    return {
        "title": git.root.name,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "where": where,
        "columns": [*columns, "version", "replayed"],
        "rows": table_rows,
        "args": {run: {k: _finite(v) for k, v in a.items()} for run, a in runs.args.items()},
        "differing": runs.differing,
        "panels": [_panel(p) for p in panels],
        "finals": {p.name: _finals(p) for p in panels},
        "images": _images(git, runs.ids),
        "versions": versions,
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; such values are shown as empty."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _panel(panel: plot.Panel) -> dict:
    series = []
    for s in panel.series:
        step = -(-len(s.y) // MAX_POINTS)  # a chart is 360 pixels wide: every step-th point
        ys = [_drawn(v) for v in s.y[::step]]
        item: dict[str, Any] = {"run": s.run, "label": s.label, "replayed": s.replayed, "y": ys}
        if s.x != list(range(len(s.x))) or step > 1:  # 0, 1, 2, ...: left out, the page counts
            item["x"] = s.x[::step]
        series.append(item)
    return {"name": panel.name, "kind": panel.kind, "xlabel": panel.xlabel,
            "xticks": panel.xticks, "series": series}


def _drawn(value: float) -> float | None:
    """A value as a chart needs it: 6 significant digits (the table keeps them all)."""
    return _finite(float(f"{value:.6g}"))


def _finals(panel: plot.Panel) -> dict[str, Any]:
    """Each run's final value of a curve (what it ended at), for final-vs-arg charts."""
    if panel.kind != "curve":
        return {}
    return {s.run: [_drawn(s.y[-1]), s.replayed] for s in panel.series}


def _images(git: Git, runs: list[str]) -> dict[str, Any]:
    shown, total, left_out = [], 0, 0
    for item in files.logged(git, runs=runs):
        if not item.ref.mime.startswith("image/"):
            continue
        data = files.read(git, item.ref) if len(shown) < MAX_IMAGES else None
        if data is None or total + len(data) > MAX_IMAGE_BYTES:
            left_out += 1
            continue
        total += len(data)
        shown.append({"run": item.run, "name": item.name, "ctx": item.ctx,
                      "replayed": item.replayed, "w": item.ref.width, "h": item.ref.height,
                      "src": f"data:{item.ref.mime};base64,"
                             + base64.b64encode(data).decode()})
    return {"shown": shown, "left_out": left_out}


def _versions(git: Git, runs: list[tuple[str, str]]) -> tuple[list[dict], dict[str, str]]:
    """Code versions (distinct shadow trees) in order of first use, each with its runs and
    the diff from the version before it."""
    versions: list[dict] = []
    by_tree: dict[str, dict] = {}
    version_of: dict[str, str] = {}
    budget = MAX_DIFFS_CHARS
    for run, commit in runs:
        tree = git.tree_of(commit)
        version = by_tree.get(tree)
        if version is None:
            version = by_tree[tree] = {"id": f"v{len(versions) + 1}", "commit": commit,
                                       "tree": tree, "runs": []}
            if versions and budget > 0:
                diff = git.diff_trees(versions[-1]["tree"], tree)
                version["diff"] = diff[:min(MAX_DIFF_CHARS, budget)]
                version["diff_cut"] = len(diff) > len(version["diff"])
                budget -= len(version["diff"])
            elif versions:
                version["diff_left_out"] = True
            versions.append(version)
        version["runs"].append(run)
        version_of[run] = version["id"]
    return versions, version_of


def render(data: dict[str, Any]) -> str:
    """The HTML page: the template with style, script and data inline."""
    assets = resources.files("flor_cli.services") / "report_assets"
    page = (assets / "report.html").read_text()
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # inside <script>, "</" could end the element and "<!--" open a comment: escape both
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")
    before, after = page.split("{{DATA}}")  # data last: nothing in it is ever substituted
    before = (before.replace("/*STYLE*/", (assets / "report.css").read_text())
                    .replace("{{TITLE}}", _html_text(f"flor report: {data['title']}")))
    return before + payload + after.replace("/*SCRIPT*/", (assets / "report.js").read_text())


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write(git: Git, path: Path, where: str | None = None) -> Path:
    """Write the report to ``path``, whole or not at all."""
    path = Path(path)
    if not path.parent.resolve().is_dir():
        raise UserError(f"-o: no such directory: {path.parent}")
    write_whole(path, render(build(git, where)).encode())
    return path
