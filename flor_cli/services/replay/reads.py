"""Which names a replay must have back after a skipped nested loop, and which it lacks.

Skipping a nested loop is exact only if everything that runs after it reads nothing the
loop changed that the checkpoint does not hold. The checkpoint records list what they
could not capture (``nc``: unpicklable or too big; ``*``: the loop's effects could not be
read at run time; see :mod:`flor_cli.runtime.checkpoint`); the code that runs after a
skipped loop is, conservatively, all of the script outside the innermost ``flor.loop``
bodies (the epoch code around the nested loops, the functions it calls, the suffix, and
the requested statements themselves). A name in both decides: that run re-executes its
nested loops, and the plan says which name forced it.

Runs recorded before checkpoints listed ``nc`` captured nothing of the frame: for them
the loop's effects are read from the code (:mod:`flor_cli.runtime.effects`), less the
names that are code (imports, functions, classes) or declared in ``flor.checkpointing``.
"""

from __future__ import annotations

import ast
from typing import Iterable

from flor_cli.runtime.effects import effects_of
from flor_cli.storage.notes import NOT_CAPTURED

UNKNOWN = "*"  # a checkpoint's nc entry: the loop's effects were not known at run time


def unheld_reads(source: str, ckpts: Iterable[dict]) -> list[str]:
    """Names read after a skipped nested loop that ``ckpts`` do not hold, sorted."""
    ckpts = list(ckpts)
    if not ckpts:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the planner reports a script that does not parse elsewhere
    leaves = _leaf_loops(tree)
    missing: set[str] = set()
    for ckpt in ckpts:
        listed = ckpt.get(NOT_CAPTURED)
        if listed is None or UNKNOWN in listed:
            missing |= _static_effects(tree, leaves)
        if listed is not None:
            missing |= set(listed) - {UNKNOWN}
    return sorted(missing & _read_outside(tree, leaves))


def _is_flor_loop(node: ast.AST) -> bool:
    """``for ... in [wrapper(]flor.loop(...)``: a call to something named ``loop``."""
    if not isinstance(node, (ast.For, ast.AsyncFor)):
        return False
    return any(isinstance(n, ast.Call) and (
        isinstance(n.func, ast.Attribute) and n.func.attr == "loop"
        or isinstance(n.func, ast.Name) and n.func.id == "loop") for n in ast.walk(node.iter))


def _leaf_loops(tree: ast.AST) -> list[ast.For]:
    """flor.loop loops with no flor.loop inside: the nested loops a replay skips."""
    loops = [n for n in ast.walk(tree) if _is_flor_loop(n)]
    return [loop for loop in loops
            if not any(_is_flor_loop(n) for s in loop.body for n in ast.walk(s))]


def _static_effects(tree: ast.Module, leaves: list[ast.For]) -> set[str]:
    found: set[str] = set()
    for loop in leaves:
        found.update(effects_of(loop).names)
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
    """Variables given to ``flor.checkpointing(name=variable)``: restored by state."""
    return {kw.value.id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "checkpointing"
            for kw in node.keywords if isinstance(kw.value, ast.Name)}


def _read_outside(tree: ast.Module, leaves: list[ast.For]) -> set[str]:
    """Names the script reads anywhere but inside the bodies of ``leaves``."""
    inside = {id(n) for loop in leaves for s in loop.body + loop.orelse for n in ast.walk(s)}
    return {n.id for n in ast.walk(tree) if id(n) not in inside
            and isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
