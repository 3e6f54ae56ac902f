"""``flor show RUN``"""

from __future__ import annotations

import json
from collections import deque
from itertools import chain
from typing import Iterable, Iterator

import click

from flor_cli.output import Output, output_options


@click.command("show")
@click.argument("run", default="latest")
@click.option("--records/--no-records", default=True, show_default=True,
              help="List every record after the summary (table format).")
@output_options
def command(run: str, records: bool, out: Output) -> None:
    """Show one run: its metadata (times as dates), the code version it ran, its args,
    a summary of each logged name (count, last, min, max, mean), its records and the
    images and files it logged.

    RUN is a run id, a unique prefix of one, a shadow commit prefix, a run's name or
    tag, or `latest`. --format json prints all of it as one object; csv, tsv and nl
    print one table, the records. Records are read and printed a batch at a time (a
    long note through a temporary file that orders them), so a run of millions of
    values is shown in bounded memory.
    """
    from flor_cli.services import query, show
    from flor_cli.storage.journal import repository_to_read

    git = repository_to_read()
    with show.show(git, query.resolve_run(git, run)) as shown:
        out.print(_document(shown, out, records))


_RECORD_COLUMNS = ["seq", "kind", "name", "value", "context", "replay"]
_FILE_COLUMNS = ["seq", "name", "file", "type", "bytes", "context", "sha"]


def _document(shown, out: Output, records: bool) -> Iterator[str]:
    """What ``flor show`` prints, as pieces of text: the records are read a batch at a
    time as they are printed, never all at once."""
    from flor_cli.output import json_items
    from flor_cli.services import show

    note = shown.note
    if out.fmt == "json":
        document = {"commit": note.commit, "header": note.header,
                    "fields": dict(shown.fields), "code": dict(shown.code),
                    "args": dict(shown.args),
                    "summary": [dict(zip(show.SUMMARY_COLUMNS, s)) for s in shown.summary],
                    "records": None, "replays": note.replays}
        head, tail = json.dumps(document, indent=2, default=str).split(
            '\n  "records": null,\n', 1)
        yield head + '\n  "records": ['
        yield from json_items(shown.batches(), 2)
        yield "  ],\n" + tail
        return
    if out.fmt != "table" and out.fmt != "markdown":  # one table: a csv is never two glued
        yield from out.chunks(_RECORD_COLUMNS, _record_rows(shown.batches(), []))
        return
    sections = [("run", ["field", "value"], [(k, _text(v)) for k, v in shown.fields]),
                ("code", ["field", "value"], shown.code),
                ("args", ["name", "value"], shown.args),
                ("summary", list(show.SUMMARY_COLUMNS), shown.summary)]
    for title, columns, rows in sections:
        if rows:
            yield f"{'' if title == 'run' else chr(10)}== {title} ==\n{out.render(columns, rows)}"
    files: list[tuple] = []
    rows = _record_rows(shown.batches(), files)
    if not records:
        deque(rows, maxlen=0)  # read for the files alone
    elif (first := next(rows, None)) is not None:
        yield "\n== records =="
        yield from out.chunks(_RECORD_COLUMNS, chain((first,), rows))
    if files:
        yield f"\n== files ==\n{out.render(_FILE_COLUMNS, files)}"


def _record_rows(batches: Iterable[list[dict]], files: list[tuple]) -> Iterator[tuple]:
    """A row per record; the logged images and files (flor.Image, flor.File) among them
    also go to ``files``, as rows of the files section."""
    from flor_cli.storage.media import MEDIA_TYPES, parse
    from flor_cli.storage.notes import (CTX, KIND, NAME, REPLAY_ID, SECONDS, SEQ, TIMING,
                                        VALUE, VALUE_TYPE)

    for batch in batches:
        for r in batch:
            yield (r.get(SEQ), r[KIND], r.get(NAME) or r.get(TIMING),
                   _text(r.get(VALUE, r.get(SECONDS))), _text(r.get(CTX, "")),
                   r.get(REPLAY_ID) or "")
            ref = parse(r.get(VALUE)) if r.get(VALUE_TYPE) in MEDIA_TYPES else None
            if ref is not None:
                files.append((r.get(SEQ), r.get(NAME), ref.file, ref.mime, ref.size,
                              _text(r.get(CTX, "")), ref.sha[:12]))


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)
