"""Property-based tests (hypothesis) over the value encoder and the note parser: any
value comes back equal or in its documented readable form (runtime/values.py); any note
text is read without an exception, and the cache keeps building (issue 9).

Deterministic (derandomize) and modest in examples, so CI stays stable and quick.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import deque
from types import SimpleNamespace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flor_cli.runtime.session import Session
from flor_cli.runtime.writer import LineFormatter
from flor_cli.storage import cache, notes, rows

SETTINGS = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
COMMIT = "c" * 40
HEADER = json.dumps({"t": "run", "v": 1, "run": "20260101-000000-abcdef", "status": "ok"})

any_text = st.text(st.characters(codec=None, categories=None)  # lone surrogates included,
                   | st.sampled_from("\ud800\udc80\udfff\x00"), max_size=20)  # and often
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | any_text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)


CUT = object()  # a repr cut at 1,000 characters: only its type and length are checked


def _readable(text: str) -> str:
    """A string as it comes back: a lone surrogate spelled out (``\\udc80``); a pair of
    surrogates given as two code points is the character they encode, as JSON reads it."""
    return json.loads(json.dumps(text)).encode("utf-8", "backslashreplace").decode("utf-8")


def expected(value):
    """What the note gives back for a logged ``value`` (see runtime/values.py)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return _readable(value)
    if isinstance(value, list):
        if _has_nonfinite(value):
            return _readable(repr(value)) if len(repr(value)) <= 1000 else CUT
        return [expected(v) for v in value]
    if isinstance(value, dict):
        if _has_nonfinite(value):
            return _readable(repr(value)) if len(repr(value)) <= 1000 else CUT
        return {_readable(k): expected(v) for k, v in value.items()}
    return value


def _has_nonfinite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(map(_has_nonfinite, value))
    if isinstance(value, dict):
        return any(map(_has_nonfinite, value.values()))
    return False


def _store_and_read(value):
    """flor.log -> journal line -> note -> parse -> cache row."""
    queue: deque = deque()
    Session.log(SimpleNamespace(queue=queue), "x", value)
    lines = LineFormatter().lines(list(queue))
    note = notes.parse(COMMIT, "\n".join([HEADER, *lines]) + "\n")
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(cache.SCHEMA)
    rows.insert(db, note, {})
    [record] = [r for r in note.records if r["t"] == "log"]
    row = db.execute("SELECT value FROM logs WHERE name='x'").fetchone()
    return record["v"], row[0]


@SETTINGS
@given(values)
def test_a_logged_value_comes_back_equal_or_in_its_readable_form(value) -> None:
    stored, cached = _store_and_read(value)
    want = expected(value)
    if want is not CUT:
        assert stored == want
    else:
        assert isinstance(stored, str) and len(stored) <= 1000
    if type(stored) is int and not -(2**63) <= stored < 2**63:
        assert cached == str(stored)  # exact, as text: never a float
    elif isinstance(stored, (list, dict)):
        assert json.loads(cached) == stored
    elif isinstance(stored, bool):
        assert cached == int(stored)
    else:
        assert cached == stored


@SETTINGS
@given(any_text)
@example("a\udc80b")  # an undecodable byte of a command line, as Python hands it over
@example("\ud83d\ude00\ud800")  # a pair as two escapes beside a lone one
def test_any_string_comes_back_readable(text: str) -> None:
    stored, cached = _store_and_read(text)
    assert stored == cached == _readable(text)


@SETTINGS
@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_integers_of_any_size_stay_exact(value: int) -> None:
    stored, cached = _store_and_read(value)
    assert stored == value and type(stored) is int
    assert cached == (value if -(2**63) <= value < 2**63 else str(value))


# -- the note parser -----------------------------------------------------------------------

KINDS = ["run", "log", "arg", "time", "ckpt", "replay", "end", "commit"]
KEYS = ["t", "s", "n", "v", "c", "rp", "ty", "k", "b", "i", "sec", "objs", "run", "script",
        "cwd", "argv", "kwargs", "names", "start", "status", "exit"]
records = st.dictionaries(st.sampled_from(KEYS), values, max_size=8).flatmap(
    lambda rec: st.sampled_from(KINDS + [None]).map(
        lambda kind: {**rec, "t": kind} if kind else rec))
lines = (records.map(lambda r: json.dumps(r).encode())
         | values.map(lambda v: json.dumps(v).encode())
         | st.binary(max_size=40))


@settings(SETTINGS, max_examples=80)
@given(st.lists(lines, max_size=10), st.booleans())
def test_any_note_is_read_without_an_exception_and_the_cache_keeps_building(
        note_lines: list[bytes], with_header: bool) -> None:
    body = b"\n".join(([HEADER.encode()] if with_header else []) + note_lines) + b"\n"
    text = body.decode("utf-8", "surrogateescape")  # as storage/git.py reads a blob
    note = notes.parse(COMMIT, text)
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(cache.SCHEMA)
    if note is not None:
        rows.insert(db, note, {})
        rows.insert(db, notes.parse("d" * 40, text), {})  # the same run id, another commit
        runs = [r for (r,) in db.execute("SELECT run FROM runs")]
        assert len(runs) == 2 and all(notes.is_id(r.split("@")[0]) for r in runs)
    for rec in (note.records if note else []):
        assert notes.problem(rec) is None
