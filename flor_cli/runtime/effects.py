"""What a nested loop leaves behind in the frame that runs it, read from the source with ``ast``.

Replay skips a nested loop by restoring a checkpoint taken where the loop ended. The
declared objects (``flor.checkpointing(model=net, ...)``) are only part of what the loop
changed: its body also binds names (``loss = ...``, the ``for`` target, ``+=``, ``with ...
as``, ``:=``) and changes objects in place (``losses.append(...)``, ``stats["n"] = ...``,
``box.w += ...``), and the rest of the epoch reads them (``flor.log("last_loss",
loss.item())``). Those names are found here, once per loop, from the loop's source;
:mod:`checkpoint` captures their values from the frame at the loop's end and puts them
back into the frame when replay skips the loop.

Calls are followed as far as the source shows them: a function of the same file that the
body calls adds the names it declares ``global`` and the module-level objects it changes;
a name passed to any call (``update(stats)``) may be changed by it, so it is captured too
when it holds a container (see :mod:`checkpoint`). What a call into another module
changes there (``helper.counter``) is not seen: that is what replay's verification (one
epoch replayed both ways, compared) is there to catch.

Standard library only: this runs inside the training process (the runtime stays light).
The replay planner uses the same analysis on the transplanted code (replay/reads.py).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Iterator

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class Effects:
    """The names a loop body binds, the names whose objects it changes in place, and the
    names it passes to calls (which may change them)."""

    bound: frozenset[str]
    mutated: frozenset[str]
    passed: frozenset[str] = frozenset()

    @property
    def names(self) -> list[str]:
        """The names whose values the loop certainly changes."""
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
    return None if node is None else effects_of(node, functions_of(tree))


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


def effects_of(loop: ast.For | ast.AsyncFor,
               functions: dict[str, ast.FunctionDef] | None = None) -> Effects:
    """Bound and mutated names of a ``for`` loop (its target included), not counting
    what nested functions, classes and comprehensions bind in their own scopes, plus the
    globals changed by the ``functions`` (module-level, by name) it calls."""
    bound: set[str] = set(_stored_names(loop.target))
    mutated: set[str] = set()
    passed: set[str] = set()
    called = _scan(loop.body + loop.orelse, bound, mutated, passed)
    functions = functions or {}
    seen: set[str] = set()
    while called:
        name = called.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        fn = functions[name]
        fn_bound: set[str] = set()
        fn_mutated: set[str] = set()
        called |= _scan(fn.body, fn_bound, fn_mutated, set())
        declared = {g for n in _walk_scope(fn.body) if isinstance(n, ast.Global) for g in n.names}
        local = (fn_bound | {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}) - declared
        mutated |= (fn_bound & declared) | (fn_mutated - local)
    return Effects(frozenset(bound), frozenset(mutated - bound), frozenset(passed - bound))


def _scan(body: list[ast.stmt], bound: set[str], mutated: set[str], passed: set[str]
          ) -> set[str]:
    """Add what ``body`` binds, mutates and passes to calls; the names of what it calls."""
    called: set[str] = set()
    for node in _walk_scope(body):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) \
                and isinstance(node.ctx, (ast.Store, ast.Del)):
            _add_root(node.value, mutated)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                _add_root(node.func.value, mutated)  # a method call may change its receiver
            elif isinstance(node.func, ast.Name):
                called.add(node.func.id)
            passed.update(a.id for a in [*node.args, *(k.value for k in node.keywords)]
                          if isinstance(a, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
    return called


def functions_of(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """The module-level functions, by name: what :func:`effects_of` follows calls into."""
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


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
