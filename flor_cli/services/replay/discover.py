"""Find a script's flor.log statements and the phase of training each one runs in.

Replay needs to know, for every logged name, whether the statement runs once before
training (prefix), once per epoch before or after the per-step loop (outer_before,
outer_after), once per step (nested) or once after training (suffix): that decides how
much of an old run must be re-executed to backfill it.  Scripts factor their training
into functions and methods, so the script is read as it runs: a local function called
from a statement is inlined at that statement (see ``Block``), and a ``flor.log`` in it
gets the level of the call site.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from flor_cli.errors import UserError
from flor_cli.runtime.compat import KITS, LOOP_ALIASES
from flor_cli.runtime.mainloop import LEVELS, MAIN, NESTED, MainLoopRule

__all__ = ["LEVELS", "Statement", "find_statements", "logged_names", "Script"]


@dataclass(frozen=True)
class Statement:
    name: str
    level: str
    source: str
    lineno: int


def find_statements(source: str, names: Iterable[str], path: str = "train.py") -> list[Statement]:
    """The statements that log ``names``, in source order; unknown names are a UserError."""
    script = Script(source, path)
    lines = MetadataWrapper(script.module, unsafe_skip_copy=True).resolve(PositionProvider)
    return [Statement(log.name, log.level, _statement_source(script.module, log.stmt),
                      lines[log.stmt].start.line)
            for log in script.select(names)]


def logged_names(source: str) -> list[str]:
    """Every literal name passed to flor.log, in order of first appearance."""
    return Script(source).names()


@dataclass(eq=False)
class Log:
    """One flor.log call: its name, the statement holding it, and its level."""

    name: str
    level: str
    stmt: cst.BaseStatement


@dataclass(eq=False)
class Block:
    """A body of code as it runs: a suite, with local functions it calls inlined.

    ``kind`` is module, for, while, if, else, with, try, except, finally, def or class;
    ``header`` is the node that introduces the block (the compound statement, or the
    ExceptHandler), None for the module.  Items come from ``suite`` and, for inlined
    calls, from the called function's body, so an item's own ``suite`` (where it really
    lives) may differ from the block's.
    """

    kind: str
    header: cst.CSTNode | None
    suite: cst.Module | cst.BaseSuite
    items: list[Item]


@dataclass(eq=False)
class Item:
    """A statement of a Block: where it really lives, and its own blocks if compound."""

    stmt: cst.BaseStatement
    suite: cst.Module | cst.IndentedBlock
    blocks: list[Block]


class FlorApi:
    """How a script spells flor's functions: ``import flor [as f]`` or ``from flor import log``.

    ``flor.X(...)`` counts as flor's even without the import, so that a script is read
    the same whatever state its imports are in.
    """

    def __init__(self, imports: Iterable[cst.Import | cst.ImportFrom]) -> None:
        self.imported: list[str] = []
        self.functions: dict[str, str] = {}
        for node in imports:
            if isinstance(node, cst.Import):
                self.imported += [_alias_name(alias) or "flor" for alias in node.names
                                  if _dotted(alias.name) == "flor"]
            elif node.module is not None and _dotted(node.module) == "flor" \
                    and not isinstance(node.names, cst.ImportStar):
                for alias in node.names:
                    self.functions[_alias_name(alias) or alias.name.value] = alias.name.value
        self.modules = {"flor", *self.imported}

    def spelling(self, function: str) -> str | None:
        """How this script calls flor's ``function``; None if it imports no way to."""
        if self.imported:
            return f"{self.imported[0]}.{function}"
        return next((local for local, name in self.functions.items() if name == function), None)

    def kind(self, node: cst.CSTNode) -> str | None:
        """Which flor function a call calls (``log``, ``loop``, ...), None if not flor's."""
        if not isinstance(node, cst.Call):
            return None
        func = node.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) \
                and func.value.value in self.modules:
            return "loop" if func.attr.value in LOOP_ALIASES else func.attr.value
        if isinstance(func, cst.Attribute) and self._is_kit(func.value):
            return "loop" if f"MTK.{func.attr.value}" in LOOP_ALIASES else None
        if isinstance(func, cst.Name):
            return self.functions.get(func.value)
        return None

    def _is_kit(self, node: cst.CSTNode) -> bool:
        """``flor.MTK``, or ``MTK``/``Flor`` imported from flor (FlorDB 2's spellings)."""
        if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
            return node.value.value in self.modules and node.attr.value in KITS
        return isinstance(node, cst.Name) and self.functions.get(node.value) in KITS

    def log_name(self, call: cst.CSTNode) -> str | None:
        """The literal name a flor.log call logs, None for other calls and computed names."""
        if self.kind(call) != "log" or not call.args:
            return None
        return _literal(call.args[0].value)

    def loop_name(self, node: cst.CSTNode | None) -> str | None:
        """The name of a ``for ... in [enumerate(]flor.loop(NAME, ...)`` loop, else None;
        ``?`` for a name that is not a literal."""
        if not isinstance(node, cst.For):
            return None
        call = node.iter
        if (isinstance(call, cst.Call) and _is_name(call.func, "enumerate")
                and call.args):
            call = call.args[0].value
        if self.kind(call) != "loop" or not call.args:
            return None
        return _literal(call.args[0].value) or "?"

    def is_checkpointing(self, node: cst.CSTNode | None) -> bool:
        return isinstance(node, cst.With) and any(
            self.kind(item.item) == "checkpointing" for item in node.items)


class Functions:
    """The script's own functions and methods, to resolve the calls that run them.

    Resolution is by name, as a reader would do it: ``f()`` is a module-level function
    (or a class's ``__init__``), ``self.f()`` any method f, ``obj.f()`` method f of the
    class ``obj`` was made from.  Calls on anything else (``self.model.train()``) are
    library calls.
    """

    def __init__(self, module: cst.Module, assigns: Iterable[cst.Assign]) -> None:
        self.functions: dict[str, cst.FunctionDef] = {}
        self.classes: dict[str, dict[str, cst.FunctionDef]] = {}
        for stmt in module.body:
            if isinstance(stmt, cst.FunctionDef):
                self.functions.setdefault(stmt.name.value, stmt)
            elif isinstance(stmt, cst.ClassDef):
                self.classes[stmt.name.value] = {
                    s.name.value: s for s in stmt.body.body if isinstance(s, cst.FunctionDef)}
        self.instances = {
            target.value: call.func.value
            for node in assigns
            if len(node.targets) == 1 and _is_name(node.targets[0].target)
            and isinstance(node.value, cst.Call) and _is_name(node.value.func)
            for target, call in [(node.targets[0].target, node.value)]
            if call.func.value in self.classes}

    def callees(self, calls: Iterable[cst.Call]) -> list[cst.FunctionDef]:
        """The local functions that ``calls`` call, in order."""
        found = []
        for call in calls:
            fn = self._resolve(call.func)
            if fn is not None and not any(fn is f for f in found):
                found.append(fn)
        return found

    def _resolve(self, func: cst.BaseExpression) -> cst.FunctionDef | None:
        if isinstance(func, cst.Name):
            if func.value in self.functions:
                return self.functions[func.value]
            return self.classes.get(func.value, {}).get("__init__")
        if not isinstance(func, cst.Attribute):
            return None
        owner, name = func.value, func.attr.value
        if _is_name(owner, "self", "cls"):
            return next((ms[name] for ms in self.classes.values() if name in ms), None)
        cls = None
        if isinstance(owner, cst.Name):
            cls = self.instances.get(owner.value, owner.value)
        elif isinstance(owner, cst.Call) and _is_name(owner.func):
            cls = owner.func.value
        return self.classes.get(cls, {}).get(name)


class Script:
    """A parsed script: how it spells flor, its code as it runs, and its flor.log calls."""

    def __init__(self, source: str, path: str = "train.py") -> None:
        self.path = path
        try:
            self.module = cst.parse_module(source)
        except cst.ParserSyntaxError as exc:
            raise UserError(f"{path}: syntax error at line {exc.raw_line}: {exc.message}") from None
        self.facts = _Facts()
        self.module.visit(self.facts)
        self.api = FlorApi(self.facts.imports)
        self.functions = Functions(self.module, self.facts.assigns)
        self.tree = Block("module", None, self.module, self._items(self.module, ()))
        self.logs, self._spans = _Phases(self.api, self.facts).classify(self.tree)

    def names(self) -> list[str]:
        return list(dict.fromkeys(log.name for log in self.logs))

    def select(self, names: Iterable[str]) -> list[Log]:
        """The flor.log statements for ``names``, in source order."""
        wanted = list(names)
        known = self.names()
        for name in wanted:
            if name not in known:
                raise UserError(f"unknown name {name!r}: {self.path} logs "
                                f"{', '.join(known) or 'nothing'}")
        return [log for log in self.logs if log.name in wanted]

    def loop_roles(self, expect_block: bool) -> list[tuple[cst.CSTNode, str, bool,
                                                            cst.CSTNode | None]]:
        """Each flor.loop as the code runs: (loop, role, inside a block, its main loop),
        by the main-loop rule; ``expect_block`` as in :class:`MainLoopRule`."""
        phases = _Phases(self.api, self.facts)
        phases.walk(self.tree, expect_block, with_defs=False)
        return phases.roles

    def nested_loop_lines(self, expect_block: bool) -> list[int]:
        """The lines of the ``for`` statements of the nested loops, the ones replay skips
        (aliases and the main-loop rule as everywhere here); a script whose walk finds
        no main loop in a block has it outside, as :meth:`_Phases.classify` reads it."""
        roles = self.loop_roles(expect_block)
        if expect_block and not any(role == MAIN for _, role, _, _ in roles):
            roles = self.loop_roles(False)
        lines = MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider)
        return sorted({lines[node].start.line for node, role, _, _ in roles if role == NESTED})

    def level_at(self, suite: cst.Module | cst.IndentedBlock, index: int) -> str:
        """The level a statement inserted at ``suite.body[index]`` would run at."""
        if index:
            return self._spans[id(suite.body[index - 1])][1]
        return self._spans[id(suite.body[0])][0]

    def _items(self, suite: cst.Module | cst.BaseSuite,
               stack: tuple[cst.FunctionDef, ...]) -> list[Item]:
        if isinstance(suite, cst.SimpleStatementSuite):
            return []
        items = []
        for stmt in suite.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for fn in self.functions.callees(self.facts.calls_in[id(stmt)]):
                    if not any(fn is f for f in stack):
                        items += self._items(fn.body, (*stack, fn))
                items.append(Item(stmt, suite, []))
            else:
                items.append(Item(stmt, suite, self._blocks(stmt, stack)))
        return items

    def _blocks(self, stmt: cst.CSTNode, stack: tuple[cst.FunctionDef, ...]) -> list[Block]:
        """The blocks of a compound statement, in the order they are written."""
        def block(kind: str, header: cst.CSTNode, suite: cst.BaseSuite,
                  inner: tuple[cst.FunctionDef, ...] = stack) -> Block:
            return Block(kind, header, suite, self._items(suite, inner))

        if isinstance(stmt, (cst.For, cst.While)):
            return [block("for" if isinstance(stmt, cst.For) else "while", stmt, stmt.body),
                    *([block("else", stmt, stmt.orelse.body)] if stmt.orelse else [])]
        if isinstance(stmt, cst.If):
            orelse = stmt.orelse
            rest = (self._blocks(orelse, stack) if isinstance(orelse, cst.If)
                    else [block("else", stmt, orelse.body)] if orelse else [])
            return [block("if", stmt, stmt.body), *rest]
        if isinstance(stmt, cst.With):
            return [block("with", stmt, stmt.body)]
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            return [block("try", stmt, stmt.body),
                    *(block("except", h, h.body) for h in stmt.handlers),
                    *([block("else", stmt, stmt.orelse.body)] if stmt.orelse else []),
                    *([block("finally", stmt, stmt.finalbody.body)] if stmt.finalbody else [])]
        if isinstance(stmt, cst.FunctionDef):
            return [block("def", stmt, stmt.body, (*stack, stmt))]
        if isinstance(stmt, cst.ClassDef):
            return [block("class", stmt, stmt.body)]
        return []


class _Phases:
    """Walks a script as it runs and tells which phase of training each flor.log is in,
    by the main-loop rule (:mod:`flor_cli.runtime.mainloop`), as the runtime does.

    A script whose walk reaches a main loop inside ``flor.checkpointing`` has it there,
    which the runtime learns when the block starts and the walk from the start
    (``expect_block``); one that does not has it at its first outermost loop.  Functions no call reaches are read where they are defined.
    Besides the logs, every statement's span (level before it, level after it) is kept,
    to tell the level of a place a statement could be inserted at, and every loop's role
    (``roles``: loop statement -> role, whether in a block, its main loop statement).
    """

    def __init__(self, api: FlorApi, facts: _Facts) -> None:
        self.api, self.facts = api, facts
        self.loops = any(api.loop_name(node) for node in facts.loops)

    def classify(self, tree: Block) -> tuple[list[Log], dict[int, tuple[str, str]]]:
        for expect_block in (True, False):
            self.walk(tree, expect_block, with_defs=False)
            if self.main is not None or not self.loops:
                break
        self.walk(tree, expect_block, with_defs=True)
        order = {id(call): i for i, call in enumerate(self.facts.calls)}
        return [self.found[k] for k in sorted(self.found, key=order.__getitem__)], self.spans

    def walk(self, tree: Block, expect_block: bool, with_defs: bool) -> None:
        """Walk the code as it runs; ``with_defs``: then again, reading the functions no
        call reaches where they are defined (a log keeps the level first found)."""
        self.found: dict[int, Log] = {}
        self.spans: dict[int, tuple[str, str]] = {}
        for defs in (False, True) if with_defs else (False,):
            self.roles: list[tuple[cst.CSTNode, str, bool, cst.CSTNode | None]] = []
            self.rule = MainLoopRule(expect_block)
            self.main: cst.CSTNode | None = None
            self._walk(tree, with_defs=defs)

    @property
    def level(self) -> str:
        return self.rule.level if self.loops else "suffix"

    def _record(self, holder: cst.CSTNode, stmt: cst.BaseStatement) -> None:
        for call in self.facts.calls_in[id(holder)]:
            name = self.api.log_name(call)
            if name is not None and id(call) not in self.found:
                self.found[id(call)] = Log(name, self.level, stmt)

    def _walk(self, block: Block, with_defs: bool) -> None:
        if isinstance(block.suite, cst.SimpleStatementSuite):
            self._record(block.suite, block.header)
        rule = self.rule
        for item in block.items:
            stmt = item.stmt
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) and not with_defs:
                continue
            before = self.level
            self._record(stmt, stmt)
            checkpointing = self.api.is_checkpointing(stmt)
            if checkpointing:
                rule.enter_block()
            role = rule.role() if self.api.loop_name(stmt) is not None else None
            serial = rule.enter_loop(role) if role else None
            if role == MAIN:
                self.main = stmt
                rule.next_iteration()
            if role:
                self.roles.append((stmt, role, rule.in_block, self.main))
            for child in item.blocks:
                self._walk(child, with_defs)
            if role:
                rule.exit_loop(role, serial)
            if checkpointing:
                rule.exit_block()
            self.spans.setdefault(id(stmt), (before, self.level))


class _Facts(cst.CSTVisitor):
    """What Script needs to know of a module, gathered in one pass (libcst visits are slow).

    ``calls_in`` maps a statement line, a compound statement (its header) or a one-line
    suite to the calls in it, not counting those in its indented blocks.
    """

    HOLDERS = (cst.SimpleStatementLine, cst.BaseCompoundStatement, cst.SimpleStatementSuite)

    def __init__(self) -> None:
        self.imports: list[cst.Import | cst.ImportFrom] = []
        self.assigns: list[cst.Assign] = []
        self.loops: list[cst.For] = []
        self.calls: list[cst.Call] = []
        self.calls_in: dict[int, list[cst.Call]] = defaultdict(list)
        self._holders: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, self.HOLDERS):
            self._holders.append(node)
        if isinstance(node, cst.Call):
            self.calls.append(node)
            if self._holders:
                self.calls_in[id(self._holders[-1])].append(node)
        elif isinstance(node, (cst.Import, cst.ImportFrom)):
            self.imports.append(node)
        elif isinstance(node, cst.Assign):
            self.assigns.append(node)
        elif isinstance(node, cst.For):
            self.loops.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        if isinstance(original_node, self.HOLDERS):
            self._holders.pop()


def _statement_source(module: cst.Module, stmt: cst.BaseStatement) -> str:
    code = module.code_for_node(stmt.with_changes(leading_lines=[])).strip()
    return code if isinstance(stmt, cst.SimpleStatementLine) else code.splitlines()[0]


def _literal(node: cst.BaseExpression) -> str | None:
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _dotted(node: cst.BaseExpression) -> str:
    return cst.Module([]).code_for_node(node)


def _alias_name(alias: cst.ImportAlias) -> str | None:
    return alias.asname.name.value if alias.asname else None


def _is_name(node: cst.CSTNode, *values: str) -> bool:
    """``node`` is a bare name (one of ``values`` when given)."""
    return isinstance(node, cst.Name) and (not values or node.value in values)


def find_all(node: cst.CSTNode, types: type | tuple[type, ...]) -> list:
    """The nodes of ``types`` under ``node`` (itself included), in source order.

    What ``libcst.matchers.findall`` does for a type, without importing the matchers,
    which cost ~0.5 s of every ``flor replay``'s start-up."""
    found: list = []

    class Collect(cst.CSTVisitor):
        def on_visit(self, child: cst.CSTNode) -> bool:
            if isinstance(child, types):
                found.append(child)
            return True

    node.visit(Collect())
    return found
