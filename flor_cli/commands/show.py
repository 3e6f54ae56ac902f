"""``flor show RUN``"""

from __future__ import annotations

import json

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
    print one table, the records.
    """
    from flor_cli.services import query, show
    from flor_cli.storage.git import Git
    from flor_cli.storage.journal import fold_orphans
    from flor_cli.storage.notes import (CTX, KIND, NAME, REPLAY_ID, SECONDS, SEQ, TIMING,
                                        VALUE)

    git = Git.discover(".")
    fold_orphans(git)
    shown = show.show(git, query.resolve_run(git, run))
    note = shown.note
    record_rows = [(r.get(SEQ), r[KIND], r.get(NAME) or r.get(TIMING),
                    _text(r.get(VALUE, r.get(SECONDS))), _text(r.get(CTX, "")),
                    r.get(REPLAY_ID) or "") for r in note.records]
    record_columns = ["seq", "kind", "name", "value", "context", "replay"]
    if out.fmt == "json":
        click.echo(json.dumps({
            "commit": note.commit, "header": note.header, "fields": dict(shown.fields),
            "code": dict(shown.code), "args": dict(shown.args),
            "summary": [dict(zip(show.SUMMARY_COLUMNS, s)) for s in shown.summary],
            "records": note.records, "replays": note.replays}, indent=2, default=str))
        return
    if out.fmt != "table" and out.fmt != "markdown":
        out.emit(record_columns, record_rows)  # one table: a csv is never two glued
        return
    sections = [("run", ["field", "value"], [(k, _text(v)) for k, v in shown.fields]),
                ("code", ["field", "value"], shown.code),
                ("args", ["name", "value"], shown.args),
                ("summary", list(show.SUMMARY_COLUMNS), shown.summary)]
    if records:
        sections.append(("records", record_columns, record_rows))
    sections.append(("files", ["seq", "name", "file", "type", "bytes", "context", "sha"],
                     _files(note.records)))
    out.show("\n\n".join(f"== {title} ==\n{out.render(columns, rows)}"
                         for title, columns, rows in sections if rows))


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _files(records: list[dict]) -> list[tuple]:
    """The logged images and files (flor.Image, flor.File) among a run's records."""
    from flor_cli.storage.media import MEDIA_TYPES, parse
    from flor_cli.storage.notes import CTX, NAME, SEQ, VALUE, VALUE_TYPE

    rows = []
    for r in records:
        ref = parse(r.get(VALUE)) if r.get(VALUE_TYPE) in MEDIA_TYPES else None
        if ref is not None:
            rows.append((r.get(SEQ), r.get(NAME), ref.file, ref.mime, ref.size,
                         _text(r.get(CTX, "")), ref.sha[:12]))
    return rows
