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

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, PositionProvider

from flor_cli.errors import UserError

LEVELS = ("prefix", "outer_before", "outer_after", "nested", "suffix")


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
    items: list[Item] = field(default_factory=list)

    def blocks(self) -> Iterator[Block]:
        for item in self.items:
            yield from item.blocks


@dataclass(eq=False)
class Item:
    stmt: cst.BaseStatement
    suite: cst.Module | cst.IndentedBlock
    blocks: list[Block]


class FlorApi:
    """How a script spells flor's functions: ``import flor [as f]`` or ``from flor import log``."""

    def __init__(self, module: cst.Module) -> None:
        self.modules = {"flor"}
        self.functions: dict[str, str] = {}
        for node in m.findall(module, m.Import() | m.ImportFrom()):
            if isinstance(node, cst.Import):
                for alias in node.names:
                    if _dotted(alias.name) == "flor":
                        self.modules.add(_alias_name(alias) or "flor")
            elif node.module is not None and _dotted(node.module) == "flor" \
                    and not isinstance(node.names, cst.ImportStar):
                for alias in node.names:
                    self.functions[_alias_name(alias) or alias.name.value] = alias.name.value

    @property
    def module_alias(self) -> str:
        """The name this script reaches the flor module by (``flor`` unless aliased)."""
        return next((a for a in sorted(self.modules) if a != "flor"), "flor")

    def kind(self, node: cst.CSTNode) -> str | None:
        """Which flor function a call calls (``log``, ``loop``, ...), None if not flor's."""
        if not isinstance(node, cst.Call):
            return None
        func = node.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) \
                and func.value.value in self.modules:
            return func.attr.value
        if isinstance(func, cst.Name):
            return self.functions.get(func.value)
        return None

    def log_name(self, call: cst.CSTNode) -> str | None:
        if self.kind(call) != "log" or not call.args:
            return None
        value = call.args[0].value
        if isinstance(value, (cst.SimpleString, cst.ConcatenatedString)):
            name = value.evaluated_value
            return name if isinstance(name, str) else None
        return None

    def loop_name(self, node: cst.CSTNode | None) -> str | None:
        """The name of a ``for ... in flor.loop(NAME, ...)`` loop, None for any other node."""
        if not isinstance(node, cst.For) or self.kind(node.iter) != "loop" or not node.iter.args:
            return None
        value = node.iter.args[0].value
        if isinstance(value, cst.SimpleString):
            name = value.evaluated_value
            return name if isinstance(name, str) else "?"
        return "?"

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

    def __init__(self, module: cst.Module) -> None:
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
            for node in m.findall(module, m.Assign(targets=[m.AssignTarget(m.Name())],
                                                   value=m.Call(func=m.Name())))
            for target, call in [(node.targets[0].target, node.value)]
            if call.func.value in self.classes}

    def callees(self, stmt: cst.CSTNode) -> list[cst.FunctionDef]:
        """The local functions a statement calls, in the order the calls appear."""
        found = []
        for call in m.findall(stmt, m.Call()):
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
        if m.matches(owner, m.Name("self") | m.Name("cls")):
            return next((ms[name] for ms in self.classes.values() if name in ms), None)
        cls = None
        if isinstance(owner, cst.Name):
            cls = self.instances.get(owner.value, owner.value)
        elif m.matches(owner, m.Call(func=m.Name())):
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
        self.api = FlorApi(self.module)
        self.functions = Functions(self.module)
        self.tree = Block("module", None, self.module, self._items(self.module, ()))
        self.logs = _Phases(self.api).classify(self.tree)

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

    def _items(self, suite: cst.Module | cst.BaseSuite,
               stack: tuple[cst.FunctionDef, ...]) -> list[Item]:
        if isinstance(suite, cst.SimpleStatementSuite):
            return []
        items = []
        for stmt in suite.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for fn in self.functions.callees(stmt):
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
    """Walks a script as it runs and tells which phase of training each flor.log is in.

    The main loop is the first ``flor.loop`` reached inside ``flor.checkpointing`` (or,
    in a script without checkpointing, the first reached at all); any flor.loop inside it
    is the nested loop.  Functions no call reaches are read where they are defined.
    """

    def __init__(self, api: FlorApi) -> None:
        self.api = api

    def classify(self, tree: Block) -> list[Log]:
        found: dict[int, Log] = {}
        self.loops = False
        for inside_checkpointing in (True, False):
            self._reset(inside_checkpointing)
            self._walk(tree, found, with_defs=False)
            if self.main_found or not self.loops:
                break
        self._reset(inside_checkpointing)
        self._walk(tree, found, with_defs=True)
        return [found[k] for k in sorted(found)]

    def _reset(self, inside_checkpointing: bool) -> None:
        self.require_checkpointing = inside_checkpointing
        self.depth = self.checkpointing = 0
        self.main_found = self.main_done = self.nested_done = False

    @property
    def level(self) -> str:
        if self.depth == 0:
            return "prefix" if self.loops and not self.main_done else "suffix"
        if self.depth == 1:
            return "outer_after" if self.nested_done else "outer_before"
        return "nested"

    def _record(self, node: cst.CSTNode, stmt: cst.BaseStatement, found: dict[int, Log]) -> None:
        for call in _own_calls(node):
            name = self.api.log_name(call)
            if name is not None and id(call) not in found:
                found[id(call)] = Log(name, self.level, stmt)

    def _walk(self, block: Block, found: dict[int, Log], with_defs: bool) -> None:
        if isinstance(block.suite, cst.SimpleStatementSuite):
            self._record(block.suite, block.header, found)
        for item in block.items:
            stmt = item.stmt
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) and not with_defs:
                continue
            self._record(stmt, stmt, found)
            loop = self.api.loop_name(stmt) is not None
            self.loops |= loop
            main = loop and self.depth == 0 and not self.main_done and (
                self.checkpointing or not self.require_checkpointing)
            nested = loop and self.depth >= 1
            checkpointing = self.api.is_checkpointing(stmt)
            self.depth += main or nested
            self.checkpointing += checkpointing
            self.main_found |= main
            for child in item.blocks:
                self._walk(child, found, with_defs)
            self.depth -= main or nested
            self.checkpointing -= checkpointing
            self.main_done |= main
            self.nested_done = (self.nested_done or (nested and self.depth == 1)) and not main


def _own_calls(node: cst.CSTNode) -> list[cst.Call]:
    """Calls in a statement that are not inside one of its indented blocks."""
    class Calls(cst.CSTVisitor):
        def __init__(self) -> None:
            self.calls: list[cst.Call] = []

        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> bool:
            return False

        def visit_Call(self, node: cst.Call) -> None:
            self.calls.append(node)

    visitor = Calls()
    node.visit(visitor)
    return visitor.calls


def _statement_source(module: cst.Module, stmt: cst.BaseStatement) -> str:
    code = module.code_for_node(stmt.with_changes(leading_lines=[])).strip()
    return code if isinstance(stmt, cst.SimpleStatementLine) else code.splitlines()[0]


def _dotted(node: cst.BaseExpression) -> str:
    return cst.Module([]).code_for_node(node)


def _alias_name(alias: cst.ImportAlias) -> str | None:
    return alias.asname.name.value if alias.asname else None
