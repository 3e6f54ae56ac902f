"""Which names a replay must have back after a skipped nested loop, and which it lacks.

Skipping a nested loop is exact only if everything that runs after it reads nothing the
loop changed that the checkpoint does not hold. The checkpoint records list what they
could not capture (``nc``: unpicklable or too big; ``*``: the loop's effects could not be
read at run time; see :mod:`flor_cli.runtime.checkpoint`); the code that runs after a
skipped loop is, conservatively, all of the script outside the bodies of the nested
loops (the epoch code around them, the functions it calls, the suffix, and the requested
statements themselves). Which loops are nested is discover's answer (the main-loop rule,
FlorDB's spellings ``flor.it``/``MTK.loop`` included), the same the levels come from. A name in both decides: that run re-executes its
nested loops, and the plan says which name forced it.

Runs recorded before checkpoints listed ``nc`` captured nothing of the frame: for them
the loop's effects are read from the code (:mod:`flor_cli.runtime.effects`, following
the script's functions the loop calls, as at run time), less the names that are code
(imports, functions, classes) or declared in ``flor.checkpointing``/``MTK.checkpoints``.
"""

from __future__ import annotations

import ast
import functools
from typing import Iterable

from flor_cli.errors import UserError
from flor_cli.runtime.compat import KITS
from flor_cli.runtime.effects import effects_of, functions_of, loop_at
from flor_cli.services.replay.discover import Script
from flor_cli.storage.notes import NOT_CAPTURED

UNKNOWN = "*"  # a checkpoint's nc entry: the loop's effects were not known at run time


def unheld_reads(source: str, ckpts: Iterable[dict], checkpointing: bool = True,
                 within: bool = False) -> list[str]:
    """Names read after a skipped nested loop that ``ckpts`` do not hold, sorted;
    ``checkpointing``: the run's main loop was in a ``flor.checkpointing`` block;
    ``within``: nested loops that run after a skipped one (a worker re-executing its
    epochs after fast-forwarding to them) count too: what their bodies read before
    binding it, which an earlier iteration left (:func:`_carried_reads`)."""
    ckpts = list(ckpts)
    if not ckpts:
        return []
    try:
        tree = ast.parse(source)
        lines = _nested_loop_lines(source, checkpointing)
    except (SyntaxError, UserError):
        return []  # the planner reports a script that does not parse elsewhere
    leaves = [loop for loop in (loop_at(tree, line) for line in lines) if loop is not None]
    missing: set[str] = set()
    for ckpt in ckpts:
        listed = ckpt.get(NOT_CAPTURED)
        if listed is None or UNKNOWN in listed:
            missing |= _static_effects(tree, leaves)
        if listed is not None:
            missing |= set(listed) - {UNKNOWN}
    reads = _read_outside(tree, leaves)
    if within:
        reads |= {name for loop in leaves for name in _carried_reads(loop)}
    return sorted(missing & reads)


@functools.lru_cache(maxsize=64)
def _nested_loop_lines(source: str, checkpointing: bool) -> tuple[int, ...]:
    """discover's nested loops, once per transplanted code (libcst takes ~0.1 s a parse;
    a plan asks for every run, and the runs of one version share their code)."""
    return tuple(Script(source).nested_loop_lines(expect_block=checkpointing))


def _static_effects(tree: ast.Module, leaves: list[ast.For | ast.AsyncFor]) -> set[str]:
    functions = functions_of(tree)
    found: set[str] = set()
    for loop in leaves:
        found.update(effects_of(loop, functions).names)
    return found - _code_names(tree) - _declared_names(tree)


def _code_names(tree: ast.Module) -> set[str]:
    """Names bound to code anywhere: imports, functions, classes (not state)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def _declared_names(tree: ast.Module) -> set[str]:
    """Variables given to ``flor.checkpointing(name=variable)`` or FlorDB 2's
    ``MTK.checkpoints(variable, ...)``: restored by their state."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = getattr(func, "attr", None) or getattr(func, "id", None)
        kit = isinstance(func, ast.Attribute) and (
            getattr(func.value, "id", None) in KITS or getattr(func.value, "attr", None) in KITS)
        if name == "checkpointing" or name == "checkpoints" and kit:
            found.update(a.id for a in [*node.args, *(k.value for k in node.keywords)]
                         if isinstance(a, ast.Name))
    return found


def _read_outside(tree: ast.Module, leaves: list[ast.For | ast.AsyncFor]) -> set[str]:
    """Names the script reads anywhere but inside the bodies of ``leaves``."""
    inside = {id(n) for loop in leaves for s in loop.body + loop.orelse for n in ast.walk(s)}
    return {n.id for n in ast.walk(tree) if id(n) not in inside
            and isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _carried_reads(loop: ast.For | ast.AsyncFor) -> set[str]:
    """Names the loop's body may read before its iteration binds them (``hidden =
    rnn(x, hidden)``, ``total += loss``), so as an earlier iteration or the code before
    the loop left them; not those it binds first (``out = model(x)``, then ``out``).
    Only plain assignments and ``with`` statements of the body bind, in order."""
    bound = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
    carried: set[str] = set()

    def read(node: ast.AST) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                name = n.id
            elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
                name = n.target.id  # x += 1 reads x
            else:
                continue
            if name not in bound:
                carried.add(name)

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    read(item.context_expr)
                    if item.optional_vars is not None:
                        bound.update(_stored(item.optional_vars))
                visit(stmt.body)
                continue
            read(stmt)
            if isinstance(stmt, ast.Assign) or (
                    isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and stmt.value is not None):
                for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    bound.update(_stored(target))

    visit(loop.body + loop.orelse)
    return carried


def _stored(target: ast.AST) -> set[str]:
    """The names an assignment target binds (``a, b.c`` binds ``a``)."""
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
