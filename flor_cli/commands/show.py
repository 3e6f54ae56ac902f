"""``flor show RUN``"""

from __future__ import annotations

import json

import click

from flor_cli.output import chosen_format, output_options, render


@click.command("show")
@click.argument("run", default="latest")
@output_options
def command(run: str, fmt_name, as_csv, as_json, as_markdown, tablefmt) -> None:
    """Show one run in full: metadata, args, every record, timings and checkpoints, and
    the images and files it logged.

    RUN is a run id, a unique prefix of one, a shadow commit prefix, or `latest`.
    """
    from flor_cli.services import query
    from flor_cli.services.show import load
    from flor_cli.storage.git import Git
    from flor_cli.storage.journal import fold_orphans
    from flor_cli.storage.notes import (CTX, KIND, NAME, REPLAY_ID, SECONDS, SEQ, TIMING,
                                        VALUE)

    git = Git.discover(".")
    fold_orphans(git)
    note = load(git, query.resolve_run(git, run))
    fmt = chosen_format(fmt_name, as_csv, as_json, as_markdown)
    if fmt == "json":
        click.echo(json.dumps({"commit": note.commit, "header": note.header,
                               "records": note.records, "replays": note.replays}, indent=2))
        return
    sections = [
        ("run", ["field", "value"], [(k, _text(v)) for k, v in note.header.items() if k != KIND]
         + [("commit", note.commit)]),
        ("records", ["seq", "kind", "name", "value", "context", "replay"],
         [(r.get(SEQ), r[KIND], r.get(NAME) or r.get(TIMING),
           _text(r.get(VALUE, r.get(SECONDS))), _text(r.get(CTX, "")), r.get(REPLAY_ID) or "")
          for r in note.records]),
    ]
    logged_files = _files(note.records)
    if logged_files:
        sections.append(("files", ["seq", "name", "file", "type", "bytes", "context", "sha"],
                         logged_files))
    for title, columns, rows in sections:
        if fmt == "table":
            click.echo(f"\n== {title} ==")
        click.echo(render(columns, rows, fmt, tablefmt))


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
