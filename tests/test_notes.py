"""The record format has one reader, ``notes.read_records``: notes, journals and a
replay worker's growing journal are all decoded by it, with the version checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flor_cli.services.replay.execute import EpochCounter
from flor_cli.storage import journal, notes

HEADER = {"t": "run", "run": "r1", "v": notes.FORMAT_VERSION}
LOG = {"t": "log", "s": 0, "n": "loss", "v": 0.5, "c": {"epoch": 0}}


def lines(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_a_note_from_a_newer_flor_is_skipped_with_one_warning(capsys) -> None:
    text = lines({**HEADER, "v": notes.FORMAT_VERSION + 1}, LOG)
    assert notes.parse("c0ffee" * 6, text) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "format version 2" in err[0] and "c0ffeec0ffee" in err[0]


def test_a_note_of_this_version_or_without_one_is_read(capsys) -> None:
    for header in (HEADER, {"t": "run", "run": "r1"}):
        note = notes.parse("ab" * 20, lines(header, LOG))
        assert note is not None and note.run == "r1" and note.records == [LOG]
    assert capsys.readouterr().err == ""


def test_lines_that_are_not_records_are_skipped_with_a_warning_naming_the_line(capsys) -> None:
    text = lines(HEADER, [1, 2], {"no": "kind"}) + "{torn\n" + lines(LOG)
    note = notes.parse("ab" * 20, text)
    assert note is not None and note.records == [LOG]
    err = capsys.readouterr().err
    assert "line 2: not a flor record" in err and "line 3: not a flor record" in err
    assert "line 4: not JSON" in err and "abababababab" in err


def test_a_journal_skips_a_torn_line_quietly_and_a_non_record_without_crashing(
        tmp_path: Path, capsys) -> None:
    path = tmp_path / "r1.jsonl"
    # before the shared reader, journal.read crashed on a line that is JSON but no object
    path.write_text(lines(HEADER, [1]) + '{"t":"lo' + "\n" + lines(LOG, {"t": "end", "s": 1,
                                                                          "end": 5.0}))
    header = journal.read_header(path)
    records = [json.loads(line) for chunk in journal.record_chunks(path)
               for line in chunk.decode().splitlines()]
    assert header["end"] == 5.0 and records == [LOG]
    assert "not JSON" not in capsys.readouterr().err


def test_epoch_counter_reads_records_not_the_writers_separators(tmp_path: Path) -> None:
    """It searched the bytes for '"k":"outer"', so a line written by json.dumps with its
    default separators (or keys in another order) was not counted."""
    path = tmp_path / "w.jsonl"
    outer = {"t": "time", "k": "outer", "c": {"epoch": 0}, "sec": 1.0}
    path.write_text(json.dumps(outer) + "\n" + json.dumps(dict(reversed(outer.items()))) + "\n"
                    + json.dumps(outer)[:10])  # a line still being written
    counter = EpochCounter(path, skip=0)
    assert counter.read() == 2
    with open(path, "a") as f:
        f.write(json.dumps(outer)[10:] + "\n")
    assert counter.read() == 3


@pytest.mark.parametrize("text", ["", "\n\n", "null\n", "[]\n", '"x"\n'])
def test_text_without_a_header_is_not_a_run(text: str) -> None:
    assert notes.parse("ab" * 20, text) is None


def test_a_replay_id_that_is_not_an_id_is_skipped_on_any_record(capsys) -> None:
    """Found by the property tests: a timing record whose "rp" was a list passed
    validation (only log and arg records had their replay id checked) and then broke
    the sort of the note's records with a TypeError."""
    text = "\n".join([
        json.dumps({"t": "run", "v": 1, "run": "20260101-000000-abcdef"}),
        json.dumps({"t": "time", "s": 0, "k": "outer", "c": {}, "rp": ["x"]}),
        json.dumps({"t": "log", "s": 1, "n": "loss", "v": 1.0, "c": {}, "rp": "r1"}),
        json.dumps({"t": "log", "s": 0, "n": "loss", "v": 0.5, "c": {}}),
    ]) + "\n"
    note = notes.parse("c" * 40, text)
    assert [r.get("rp") for r in note.records] == [None, "r1"]
    assert "line 2" in capsys.readouterr().err


def test_a_checkpoint_of_every_serializer_the_runtime_writes_is_read(capsys) -> None:
    """checkpoint.py wrote "module" and "frame" objects that the note validator, with its
    own list of serializers, rejected: every checkpoint of a torch module was dropped."""
    objs = {kind: {"kind": kind, "sha": "ab" * 32} for kind in
            ("module", "state_dict", "pickle", "rng", "frame")}
    ckpt = {"t": "ckpt", "s": 1, "b": 0, "c": {"epoch": 0}, "i": 0, "objs": objs, "sec": 0.1}
    note = notes.parse("ab" * 20, lines(HEADER, ckpt))
    assert note is not None and note.records == [ckpt]
    assert capsys.readouterr().err == ""


def test_a_checkpoint_whose_loop_context_holds_a_list_is_skipped(capsys) -> None:
    """A checkpoint's context values are the epochs replay plans with (a set of them):
    a list there, from another clone's note, crashed `flor replay` (exit 3)."""
    from flor_cli.services.replay.plan import Job, check_range

    ckpt = {"t": "ckpt", "s": 3, "c": {"epoch": [1]}, "objs": {}}
    assert notes.problem(ckpt) == "a loop context, block, ordinal or duration of the wrong type"
    assert notes.problem({**ckpt, "c": {"epoch": 1}}) is None
    good = notes.read_records(json.dumps({**ckpt, "c": {"epoch": 0}}) + "\n"
                              + json.dumps(ckpt) + "\n", "a note")
    assert len(good) == 1 and "line 2" in capsys.readouterr().err
    job = Job(run="r", commit="c" * 40, epochs=2, ckpts=good)
    assert check_range(job) == [0, None]


@pytest.mark.parametrize("field", [
    {"cwd": "/etc"}, {"cwd": "../x"}, {"cwd": "a/../../x"}, {"cwd": "a\0b"}, {"cwd": None},
    {"cwd": ["."]}, {"script": ["train.py"]}, {"script": 3}, {"script": "train\0.py"},
    {"big": "data.bin"}, {"big": [3]}, {"big": [{"path": "../../etc/passwd"}]},
    {"big": [{"path": "/etc/passwd"}]}, {"big": [{"path": ""}]}, {"big": [{"size": 1}]},
    {"big": [{"path": "data\\..\\..\\x"}]}, {"name": ["best"]}])
def test_a_header_whose_paths_or_names_are_unsafe_is_skipped_where_it_is_decoded(
        field: dict, capsys) -> None:
    """A header's working directory and big files become paths in a replay's worktree:
    the decoder rejects one that is not a plain relative path (it was only checked by
    replay, and a big file's path by bigfiles, each with its own rule)."""
    header = {**HEADER, "script": "train.py", "cwd": "sub", **field}
    assert notes.problem(header) is not None
    assert notes.parse("ab" * 20, lines(header, LOG)) is None
    assert "line 1" in capsys.readouterr().err


def test_a_header_with_plain_paths_is_read(capsys) -> None:
    """An absolute script is what ``flor run /tmp/x.py`` records (a script outside the
    repository): the run is listed, and replay says it cannot replay it."""
    for field in ({"script": "/tmp/x.py", "cwd": "."}, {"script": "../x.py", "cwd": "a/b"},
                  {"big": [{"path": "data/big.bin", "size": 9, "hash": None}]}, {}):
        header = {**HEADER, **field}
        assert notes.problem(header) is None, field
        assert notes.parse("ab" * 20, lines(header, LOG)) is not None
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("event", [
    {"t": "tag", "at": 1.0, "n": ["x"]}, {"t": "tag", "at": 1.0, "n": ""},
    {"t": "untag", "at": 1.0}, {"t": "note", "at": 1.0, "m": 5}, {"t": "rm", "at": "x"},
    {"t": "rm", "at": True}, {"t": "restore"}, {"t": "rm", "at": 1.0, "n": {"a": 1}}])
def test_a_bad_lifecycle_record_is_skipped_with_a_warning_by_the_decoder(
        event: dict, capsys) -> None:
    """Lifecycle records were checked apart from every other record (and dropped without
    a word); now :func:`notes.problem` checks them, wherever a note is decoded."""
    assert notes.problem(event) is not None
    assert notes.read_records(lines(HEADER, event), "a note") == [HEADER]
    note = notes.parse("ab" * 20, lines(HEADER, LOG, event, {"t": "tag", "at": 2, "n": "ok"}))
    assert [e["n"] for e in note.events] == ["ok"]
    assert "line 2" in capsys.readouterr().err


@pytest.mark.parametrize("field", [{"nc": 3}, {"nc": [1]}, {"fx": "x"}, {"fx": [None]},
                                   {"nc": {"a": 1}}])
def test_a_checkpoint_whose_name_lists_are_not_lists_of_names_is_skipped(field: dict) -> None:
    """Found by fuzzing read commands with hostile notes: a checkpoint whose ``nc`` was a
    number crashed `flor replay`'s plan (reads.unheld_reads: exit 3)."""
    ckpt = {"t": "ckpt", "s": 3, "c": {"epoch": 0}, "objs": {}, "fx": ["s"], "nc": ["*"]}
    assert notes.problem(ckpt) is None
    assert notes.problem({**ckpt, **field}) is not None


def test_a_time_no_calendar_holds_is_shown_as_it_is() -> None:
    """Found by fuzzing: a header's start of 1e308 crashed `flor show` (exit 3)."""
    from flor_cli.services.show import date

    assert date(1e308) == 1e308 and date(-1e308) == -1e308 and date(float("nan")) != ""
    assert date(0).startswith("19")


def test_a_log_whose_sequence_number_is_null_is_skipped_not_a_crash(capsys) -> None:
    """``"s": null`` passed the in-C check of log records (a missing number reads as
    None too), then sorting the note compared None with numbers: every read command
    exited 3 on such a note from a remote."""
    text = lines(HEADER, {**LOG, "s": None}, {**LOG, "s": 3, "v": 0.25})
    note = notes.parse("ab" * 20, text)
    assert note is not None and note.records == [{**LOG, "s": 3, "v": 0.25}]
    assert "sequence number" in capsys.readouterr().err


def test_a_line_whose_kind_is_a_list_is_skipped_not_a_crash(capsys) -> None:
    """Found by the property test: ``{"t": []}`` made the check of kinds hash a list."""
    note = notes.parse("ab" * 20, lines(HEADER, {"t": []}, LOG))
    assert note is not None and note.records == [LOG]
    assert "line 2" in capsys.readouterr().err
