"""What a nested loop leaves behind in the frame that runs it, read from the source with ``ast``.

Replay skips a nested loop by restoring a checkpoint taken where the loop ended. The
declared objects (``flor.checkpointing(model=net, ...)``) are only part of what the loop
changed: its body also binds names (``loss = ...``, the ``for`` target, ``+=``, ``with ...
as``, ``:=``) and changes objects in place (``losses.append(...)``, ``stats["n"] = ...``,
``box.w += ...``), and the rest of the epoch reads them (``flor.log("last_loss",
loss.item())``). Those names are found here, once per loop, from the loop's source;
:mod:`checkpoint` captures their values from the frame at the loop's end and puts them
back into the frame when replay skips the loop.

The analysis is syntactic: a change made through a call (``update(stats)`` mutating its
argument inside another function) is not seen. That is what replay's verification (one
epoch replayed both ways, compared) is there to catch.

Standard library only: this runs inside the training process (the runtime stays light).
The replay planner uses the same functions on the transplanted code (:func:`reads`).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Iterable, Iterator

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class Effects:
    """The names a loop body binds and the names whose objects it changes in place."""

    bound: frozenset[str]
    mutated: frozenset[str]

    @property
    def names(self) -> list[str]:
        return sorted(self.bound | self.mutated)


@functools.lru_cache(maxsize=256)
def loop_effects(filename: str, lineno: int) -> Effects | None:
    """The effects of the ``for`` loop whose iterable is the ``flor.loop(...)`` call at
    ``lineno`` of ``filename``; None where no such loop is found (a ``flor.loop`` bound to
    a name first, source not readable): replay then cannot restore the frame, and says so."""
    tree = _parse_file(filename)
    if tree is None:
        return None
    node = loop_at(tree, lineno)
    return None if node is None else effects_of(node)


def loop_at(tree: ast.AST, lineno: int) -> ast.For | ast.AsyncFor | None:
    """The innermost ``for`` whose header (``for`` to the end of its iterable) spans
    ``lineno``."""
    found = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)) \
                and node.lineno <= lineno <= (node.iter.end_lineno or node.iter.lineno):
            if found is None or node.lineno >= found.lineno:
                found = node
    return found


def effects_of(loop: ast.For | ast.AsyncFor) -> Effects:
    """Bound and mutated names of a ``for`` loop (its target included), not counting
    what nested functions, classes and comprehensions bind in their own scopes."""
    bound: set[str] = set(_stored_names(loop.target))
    mutated: set[str] = set()
    for node in _walk_scope(loop.body + loop.orelse):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) \
                and isinstance(node.ctx, (ast.Store, ast.Del)):
            _add_root(node.value, mutated)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            _add_root(node.func.value, mutated)  # a method call may change its receiver
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
    return Effects(frozenset(bound), frozenset(mutated - bound))


def reads(nodes: Iterable[ast.AST]) -> set[str]:
    """Names that ``nodes`` read (loaded), nested functions and comprehensions included."""
    return {n.id for node in nodes for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _walk_scope(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``nodes`` in the scope they run in: a nested def or comprehension
    is yielded itself (it binds its name) but not entered."""
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _stored_names(target: ast.AST) -> Iterator[str]:
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            yield node.id


def _add_root(node: ast.AST, into: set[str]) -> None:
    """``a`` for ``a.b[c].d``: the name whose object an assignment or call reaches."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    if isinstance(node, ast.Name):
        into.add(node.id)


@functools.lru_cache(maxsize=64)
def _parse_file(filename: str) -> ast.Module | None:
    try:
        with open(filename, encoding="utf-8") as f:
            return ast.parse(f.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return None
