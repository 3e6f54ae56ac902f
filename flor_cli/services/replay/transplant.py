"""Transplant hindsight flor.log statements from today's script into an old version of it.

Done by hand, this is: find in the old file the block that corresponds to the one that
holds the statement today (same flor.loop, same ``with``, same function), find there the
line the statement follows today, put it after that line, and rename the variables that
were renamed since.  Here the same is done on libcst trees:

* statements are compared blind to formatting (through ``ast``), so reformatting,
  quotes and comments don't matter, and small edits are tolerated (difflib ratio);
* renames are found by aligning both versions' statements and pairing the identifiers of
  statements that differ only in identifiers;
* blocks are matched down the chain from the module, reading each version as it runs
  (``discover.Block``), so code moved into or out of a function still lines up;
* every candidate place is checked: the names the statement reads must exist there, and
  it must land in the same phase of training as today.  The first place that passes wins.

The old version's own lines come out byte for byte: the statement is inserted into the
old tree, which libcst renders unchanged.
"""

from __future__ import annotations

import ast
import copy
import difflib
from collections import Counter, defaultdict, deque
from typing import Callable, Iterator, Mapping, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider, ScopeProvider

from flor_cli.errors import NoPlace
from flor_cli.services.replay.discover import Block, FlorApi, Item, Log, Script, find_all

SIMILAR = 0.8  # difflib ratio above which two statements are one statement, edited


def transplant(names: Sequence[str], new_source: str, old_source: str, *,
               new_path: str = "train.py", old_path: str = "the old version") -> str:
    """OLD with NEW's flor.log statements for ``names`` inserted; OLD itself if already there."""
    new = Script(new_source, new_path)
    new_code = _Code(new.module)
    result = old_source
    for log in new.select(names):
        old = Script(result, old_path)
        if not any(o.name == log.name and o.level == log.level for o in old.logs):
            result = _Transplant(new, new_code, old).place(log)
    return result


def diff(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True), f"a/{path}", f"b/{path}"))


class _Transplant:
    """One statement into one old version."""

    def __init__(self, new: Script, new_code: _Code, old: Script) -> None:
        self.new, self.old = new, old
        self.old_code = _Code(old.module)
        self.renames = _renames(new_code, _run_order(new.tree), self.old_code, _run_order(old.tree))
        self.new_code = new_code.renamed(self.renames)
        wrapper = MetadataWrapper(old.module, unsafe_skip_copy=True)
        self.scopes = wrapper.resolve(ScopeProvider)
        self.lines = wrapper.resolve(PositionProvider)

    def place(self, log: Log) -> str:
        where = f"no place for {log.name!r} in {self.old.path}"
        if not isinstance(log.stmt, cst.SimpleStatementLine):
            raise NoPlace(f"{where}: in {self.new.path} it shares a line with other code")
        chain, index = next((chain, i) for chain in _chains(self.new.tree)
                            for i, item in enumerate(chain[-1].items) if item.stmt is log.stmt)
        target = self._map(chain, where)
        payload, reads = self._payload(log.stmt)
        reason, fallback = f"{where}: nowhere in it would the statement run {log.level}", None
        for suite, at in _unique(self._places(chain[-1], index, target, reads)):
            missing = [name for name in reads if not self._defined(name, suite, at)]
            if missing:
                reason = f"{where}: it does not define {missing[0]!r}"
                continue
            level = self.old.level_at(suite, at)
            if level == log.level:
                return _insert(self.old.module, suite, at, payload)
            if fallback is None and _phase(level) == _phase(log.level):
                fallback = suite, at
        if fallback is None:
            raise NoPlace(reason)
        return _insert(self.old.module, *fallback, payload)

    def _map(self, chain: list[Block], where: str) -> Block:
        """The old block that corresponds to the last of ``chain``.

        Levels the old version lacks are skipped (a ``with`` added since, say), except
        flor.loops: without its loop, the statement has no place.  Levels the old version
        has in excess are looked through.
        """
        block = self.old.tree
        for wanted in chain[1:]:
            found = next((c[-1] for c in _chains(block)
                          if len(c) > 1 and self._same_block(wanted, c[-1])), None)
            if found is not None:
                block = found
            elif wanted.kind == "for" and self.new.api.loop_name(wanted.header):
                raise NoPlace(f"{where}: it has no flor.loop("
                              f"{self.new.api.loop_name(wanted.header)!r})")
        return block

    def _places(self, block: Block, index: int, target: Block,
                reads: list[str]) -> Iterator[tuple[cst.CSTNode, int]]:
        """Where the statement could go, best first: after the nearest statement that
        precedes it today in its own body, before the nearest that follows it, after
        the nearest that precedes it in the code run before it, after the old statement
        that last sets a variable it reads, at the start of the block.
        """
        items = block.items
        home = items[index].suite
        before, after = items[index - 1::-1] if index else [], items[index + 1:]
        for anchors, offset in (([i for i in before if i.suite is home], 1),
                                ([i for i in after if i.suite is home], 0),
                                ([i for i in before if i.suite is not home], 1)):
            for anchor in anchors:
                for match in self._matches(anchor.stmt, target):
                    yield match.suite, _index(match) + offset
        for item in reversed(target.items):
            if not set(reads).isdisjoint(_assigned(item.stmt)):
                yield item.suite, _index(item) + 1
                break
        if isinstance(target.suite, (cst.Module, cst.IndentedBlock)):
            yield target.suite, _docstring_lines(target.suite)

    def _matches(self, stmt: cst.BaseStatement, target: Block) -> list[Item]:
        scored = [(self._score(stmt, item.stmt), n, item) for n, item in enumerate(target.items)]
        return [item for score, _, item in sorted(scored, key=lambda s: (-s[0], s[1]))
                if score >= SIMILAR]

    def _score(self, a: cst.BaseStatement, b: cst.BaseStatement) -> float:
        if type(a) is not type(b):
            return 0.0
        if isinstance(a, (cst.FunctionDef, cst.ClassDef)):
            return float(a.name.value == b.name.value)
        loops = self.new.api.loop_name(a), self.old.api.loop_name(b)
        if any(loops):
            return float(loops[0] == loops[1])
        if self.new.api.is_checkpointing(a) and self.old.api.is_checkpointing(b):
            return 1.0
        return _ratio(self.new_code.text(a), self.old_code.text(b))

    def _same_block(self, a: Block, b: Block) -> bool:
        if a.kind != b.kind:
            return False
        if a.kind in ("def", "class"):
            return a.header.name.value == b.header.name.value
        if a.kind == "for" and (self.new.api.loop_name(a.header) or self.old.api.loop_name(b.header)):
            return self.new.api.loop_name(a.header) == self.old.api.loop_name(b.header)
        checkpointing = self.new.api.is_checkpointing(a.header), self.old.api.is_checkpointing(b.header)
        if a.kind == "with" and any(checkpointing):
            return all(checkpointing)
        return _ratio(self.new_code.text(a.header), self.old_code.text(b.header)) >= SIMILAR

    def _payload(self, stmt: cst.SimpleStatementLine) -> tuple[cst.SimpleStatementLine, list[str]]:
        """The statement in the old version's names and spelling of flor, and the names it reads."""
        stmt = stmt.visit(_Respell(self.new.api, self.old.api))
        free = _FreeNames.of(stmt)
        renamed = stmt.visit(_Rename({id(n) for n in free}, self.renames))
        reads = dict.fromkeys(self.renames.get(n.value, n.value) for n in free)
        return renamed.with_changes(leading_lines=()), list(reads)

    def _defined(self, name: str, suite: cst.CSTNode, at: int) -> bool:
        """Whether ``name`` is set before position ``at`` of ``suite`` in the old version.

        A name the same scope sets must be set on an earlier line; one from an outer
        scope (a global read in a function, a builtin) is taken as set.
        """
        scope = self.scopes[suite.body[0]]
        if name not in scope:
            return False
        local = [a for a in scope[name] if a.scope is scope]
        if not local:
            return True
        body = suite.body
        limit = (self.lines[body[at]].start.line if at < len(body)
                 else self.lines[body[-1]].end.line + 1)
        return any(self.lines[a.node].start.line < limit for a in local)


class _Code:
    """Formatting-blind views of a script's statements, through ``ast``.

    A compound statement is reduced to its header (``for x in y:``), so that a loop
    matches its old self whatever its body became.  ``renames`` (new name -> old name)
    is applied to ``text``, to compare a new statement with an old one.
    """

    def __init__(self, module: cst.Module, renames: Mapping[str, str] | None = None,
                 trees: dict[int, ast.AST] | None = None) -> None:
        self.module = module
        self.renames = renames or {}
        self._trees = {} if trees is None else trees
        self._texts: dict[int, str] = {}
        self._shapes: dict[int, str] = {}

    def renamed(self, renames: Mapping[str, str]) -> _Code:
        return _Code(self.module, renames, self._trees)

    def tree(self, node: cst.CSTNode) -> ast.AST:
        if id(node) not in self._trees:
            code = self.module.code_for_node(_header(node))
            if isinstance(node, cst.ExceptHandler):
                tree = ast.parse("try:\n    pass\n" + code).body[0].handlers[0]
            elif isinstance(node, cst.BaseCompoundStatement):
                tree = ast.parse(code).body[0]
            else:
                tree = ast.parse(code)
            if not isinstance(tree, ast.Module):
                for attr in ("body", "orelse", "finalbody", "handlers"):
                    if isinstance(getattr(tree, attr, None), list):
                        setattr(tree, attr, [])
            self._trees[id(node)] = tree
        return self._trees[id(node)]

    def text(self, node: cst.CSTNode) -> str:
        if id(node) not in self._texts:
            renamed = not self.renames.keys().isdisjoint(self.identifiers(node))
            self._texts[id(node)] = (self._unparse(node, lambda n: self.renames.get(n, n))
                                     if renamed else ast.unparse(self.tree(node)))
        return self._texts[id(node)]

    def shape(self, node: cst.CSTNode) -> str:
        if id(node) not in self._shapes:
            self._shapes[id(node)] = self._unparse(node, lambda n: "_")
        return self._shapes[id(node)]

    def identifiers(self, node: cst.CSTNode) -> list[str]:
        return [n.id if isinstance(n, ast.Name) else n.arg
                for n in ast.walk(self.tree(node)) if isinstance(n, (ast.Name, ast.arg))]

    def _unparse(self, node: cst.CSTNode, rename: Callable[[str], str]) -> str:
        class Rename(ast.NodeTransformer):
            def visit_Name(self, n: ast.Name) -> ast.Name:
                n.id = rename(n.id)
                return n

            def visit_arg(self, n: ast.arg) -> ast.arg:
                n.arg = rename(n.arg)
                return self.generic_visit(n)

        return ast.unparse(Rename().visit(copy.deepcopy(self.tree(node))))


_STUB = cst.IndentedBlock([cst.SimpleStatementLine([cst.Pass()])])


def _header(node: cst.CSTNode) -> cst.CSTNode:
    """A compound statement with its blocks emptied: rendering whole bodies is slow."""
    if isinstance(node, (cst.For, cst.While, cst.If)):
        return node.with_changes(body=_STUB, orelse=None)
    if isinstance(node, cst.Try):
        return node.with_changes(body=_STUB, handlers=(), orelse=None, finalbody=cst.Finally(_STUB))
    if isinstance(node, (cst.With, cst.FunctionDef, cst.ClassDef, cst.ExceptHandler)):
        return node.with_changes(body=_STUB)
    return node


def _renames(new: _Code, a: list[cst.BaseStatement],
             old: _Code, b: list[cst.BaseStatement]) -> dict[str, str]:
    """new name -> old name, for the identifiers renamed since the old version.

    Statements are aligned on their text, in the order they run, so that code moved
    into or out of a function still aligns; in the stretches between exact matches,
    statements of the same shape (equal but for identifiers) are aligned too, and each
    aligned pair votes for the pairing of its identifiers.  Unchanged statements vote
    for keeping names, so a name must be renamed more often than kept to count.
    """
    votes: dict[str, Counter] = defaultdict(Counter)
    outer = difflib.SequenceMatcher(None, [new.text(s) for s in a], [old.text(s) for s in b],
                                    autojunk=False)
    for tag, i1, i2, j1, j2 in outer.get_opcodes():
        if tag == "equal":
            pairs = list(zip(range(i1, i2), range(j1, j2)))
        elif tag == "replace":
            inner = difflib.SequenceMatcher(None, [new.shape(s) for s in a[i1:i2]],
                                            [old.shape(s) for s in b[j1:j2]], autojunk=False)
            pairs = [(i1 + i + k, j1 + j + k) for i, j, n in inner.get_matching_blocks()
                     for k in range(n)]
        else:
            continue
        for i, j in pairs:
            for x, y in zip(new.identifiers(a[i]), old.identifiers(b[j])):
                votes[x][y] += 1
    renames = {}
    for name, counts in votes.items():
        best, n = counts.most_common(1)[0]
        if best != name and n > counts[name]:
            renames[name] = best
    return renames


class _FreeNames(cst.CSTVisitor):
    """The names a statement reads from around it: not attribute names, not keyword
    names, not the variables of its own comprehensions and lambdas."""

    def __init__(self) -> None:
        self.names: list[cst.Name] = []
        self.bound: set[str] = set()

    @classmethod
    def of(cls, stmt: cst.CSTNode) -> list[cst.Name]:
        visitor = cls()
        stmt.visit(visitor)
        return [n for n in visitor.names if n.value not in visitor.bound]

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self.bound.update(n.value for n in find_all(node.target, cst.Name))

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self.bound.update(n.value for n in find_all(node.params, cst.Name))

    def visit_Name(self, node: cst.Name) -> None:
        self.names.append(node)


class _Respell(cst.CSTTransformer):
    """Calls to flor spelled the way the old version imports it (``fl.log``, ``log``)."""

    def __init__(self, new: FlorApi, old: FlorApi) -> None:
        self.new, self.old = new, old

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        function = self.new.kind(original)
        spelling = function and self.old.spelling(function)
        if spelling and spelling != cst.Module([]).code_for_node(original.func):
            return updated.with_changes(func=cst.parse_expression(spelling))
        return updated


class _Rename(cst.CSTTransformer):
    def __init__(self, targets: set[int], renames: Mapping[str, str]) -> None:
        self.targets, self.renames = targets, renames

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        if id(original) in self.targets and original.value in self.renames:
            return updated.with_changes(value=self.renames[original.value])
        return updated


class _Insert(cst.CSTTransformer):
    def __init__(self, suite: cst.CSTNode, index: int, stmt: cst.BaseStatement) -> None:
        self.suite, self.index, self.stmt = suite, index, stmt

    def on_leave(self, original: cst.CSTNode, updated: cst.CSTNode) -> cst.CSTNode:
        if original is self.suite:
            body = list(updated.body)
            body.insert(self.index, self.stmt)
            return updated.with_changes(body=body)
        return updated


def _insert(module: cst.Module, suite: cst.CSTNode, index: int, stmt: cst.BaseStatement) -> str:
    return module.visit(_Insert(suite, index, stmt)).code


def _run_order(tree: Block) -> list[cst.BaseStatement]:
    """A script's statements in the order they run (calls inlined), then the statements
    of functions no call reaches."""
    found: dict[int, cst.BaseStatement] = {}

    def walk(block: Block, into_definitions: bool) -> None:
        for item in block.items:
            if into_definitions or not isinstance(item.stmt, (cst.FunctionDef, cst.ClassDef)):
                found.setdefault(id(item.stmt), item.stmt)
                for child in item.blocks:
                    walk(child, into_definitions)

    walk(tree, False)
    walk(tree, True)
    return list(found.values())


def _chains(root: Block) -> Iterator[list[Block]]:
    """Paths from ``root`` down to every block, breadth first: first through code that
    runs, then also into the bodies of functions and classes where they are defined."""
    for into_definitions in (False, True):
        queue = deque([[root]])
        while queue:
            chain = queue.popleft()
            yield chain
            for item in chain[-1].items:
                if into_definitions or not isinstance(item.stmt, (cst.FunctionDef, cst.ClassDef)):
                    queue.extend([*chain, child] for child in item.blocks)


def _assigned(stmt: cst.BaseStatement) -> set[str]:
    """The variables a statement sets: assignment and for targets, ``with ... as``."""
    if isinstance(stmt, cst.For):
        targets = [stmt.target]
    elif isinstance(stmt, cst.With):
        targets = [item.asname.name for item in stmt.items if item.asname]
    elif isinstance(stmt, cst.SimpleStatementLine):
        targets = [t.target for t in find_all(stmt, (cst.AssignTarget, cst.AugAssign, cst.AnnAssign))]
    else:
        return set()
    return {name for target in targets for name in _target_names(target)}


def _target_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _target_names(element.value)


def _unique(places: Iterator[tuple[cst.CSTNode, int]]) -> Iterator[tuple[cst.CSTNode, int]]:
    seen = set()
    for suite, at in places:
        if (id(suite), at) not in seen:
            seen.add((id(suite), at))
            yield suite, at


def _index(item: Item) -> int:
    return next(i for i, stmt in enumerate(item.suite.body) if stmt is item.stmt)


def _docstring_lines(suite: cst.Module | cst.IndentedBlock) -> int:
    first = suite.body[0] if suite.body else None
    return int(isinstance(first, cst.SimpleStatementLine) and len(first.body) == 1
               and isinstance(first.body[0], cst.Expr)
               and isinstance(first.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _ratio(a: str, b: str) -> float:
    return 1.0 if a == b else difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _phase(level: str) -> str:
    """outer_before and outer_after are one phase where an old loop has no nested loop."""
    return level.split("_")[0]
