"""``flor lint``: find the flor calls in a script that would break recording or replay.

Replay finds statements by the literal names they log, and decides how much of an old
run to re-execute from the level (phase of training) each statement runs at, so the
checks read a script exactly as replay does: through ``replay.discover.Script``, which
inlines the local functions a statement calls.

* FL000  the file does not parse.
* FL001  the name given to flor.log/arg/loop is not a string literal: replay, `flor log`
         and this linter cannot know it before the script runs.
* FL002  one name is logged at different levels (prefix, main loop, nested loop,
         suffix): its values would mix rows of different shapes, and replay could only
         backfill one of the statements per run.
* FL003  a main loop (by the main-loop rule, runtime/mainloop.py) holds a nested
         flor.loop but is outside ``with flor.checkpointing``: nothing is checkpointed,
         so replay has to re-execute the whole loop.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from flor_cli.errors import UserError
from flor_cli.storage.git import Git

if TYPE_CHECKING:  # libcst is imported only when a script is linted
    from flor_cli.services.replay.discover import Script

_IMPORTS_FLOR = re.compile(r"^\s*(?:import\s+flor\b|from\s+flor\b)", re.M)
_NAMED_CALLS = ("log", "arg", "loop")
_LEVEL_WORDS = {"prefix": "before the main loop", "outer_before": "in the main loop",
                "outer_after": "in the main loop", "nested": "in a nested loop",
                "suffix": "after the main loop"}


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    col: int  # 1-based, as flake8 and editors count
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


def lint_files(paths: Iterable[str]) -> list[Finding]:
    """Findings file by file, in the order given; every path is checked before any is read."""
    paths = list(paths)
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"no such file: {path}")
    findings: list[Finding] = []
    for path in paths:
        try:
            source = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None
        findings += lint_source(source, path)
    return findings


def tracked_scripts(git: Git) -> list[str]:
    """The .py files git tracks, anywhere in the repository, that import flor.

    Paths are relative to the current directory, as ``git ls-files`` prints them.
    """
    listed = git.tracked_files(":/*.py", cwd=Path.cwd())
    return [p for p in listed if Path(p).is_file()
            and _IMPORTS_FLOR.search(Path(p).read_text(encoding="utf-8", errors="replace"))]


def lint_source(source: str, path: str) -> list[Finding]:
    """Findings for one script; a file that does not import flor has none."""
    if not _IMPORTS_FLOR.search(source):
        return []
    try:
        ast.parse(source, path)
    except SyntaxError as e:
        return [Finding(path, e.lineno or 1, e.offset or 1, "FL000", f"syntax error: {e.msg}")]
    from libcst.metadata import MetadataWrapper, PositionProvider

    from flor_cli.services.replay.discover import Script

    script = Script(source, path)
    positions = MetadataWrapper(script.module, unsafe_skip_copy=True).resolve(PositionProvider)

    def at(node, code: str, message: str) -> Finding:
        start = positions[node].start
        return Finding(path, start.line, start.column + 1, code, message)

    def line_of(node) -> int:
        return positions[node].start.line

    found = [at(node, code, message) for node, code, message in
             [*_unnamed(script), *_mixed_levels(script, line_of), *_unguarded_loops(script)]]
    return sorted(set(found))


def _unnamed(script: Script) -> Iterator[tuple]:
    """FL001: flor.log/arg/loop calls whose name is not a string literal."""
    import libcst as cst
    import libcst.matchers as m

    for call in m.findall(script.module, m.Call()):
        kind = script.api.kind(call)
        if kind not in _NAMED_CALLS:
            continue
        name = next((a.value for a in call.args if a.keyword is None or a.keyword.value == "name"),
                    None)
        if name is None or (isinstance(name, (cst.SimpleString, cst.ConcatenatedString))
                            and isinstance(name.evaluated_value, str)):
            continue
        yield call, "FL001", f"flor.{kind} name is not a string literal; replay and " \
                             "`flor log` look statements up by their literal name"


def _mixed_levels(script: Script, line_of: Callable[..., int]) -> Iterator[tuple]:
    """FL002: a name logged at one level in one statement and another level in another."""
    first: dict[str, tuple] = {}
    for log in script.logs:
        where = _LEVEL_WORDS[log.level]
        first_where, first_stmt = first.setdefault(log.name, (where, log.stmt))
        if where != first_where:
            yield log.stmt, "FL002", (f"{log.name!r} is logged {where} here but {first_where} "
                                      f"at line {line_of(first_stmt)}")


def _unguarded_loops(script: Script) -> Iterator[tuple]:
    """FL003: a main loop outside ``with flor.checkpointing`` with a nested flor.loop,
    by the main-loop rule as recording applies it before any block has started."""
    from flor_cli.runtime.mainloop import NESTED

    for _, role, in_block, main in script.loop_roles(expect_block=False):
        if role == NESTED and not in_block:
            yield main, "FL003", (
                f"flor.loop {script.api.loop_name(main)!r} has a nested flor.loop but is not "
                "inside `with flor.checkpointing(...)`: replay would re-execute it in full")
