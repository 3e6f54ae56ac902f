"""Logged images and files: the reference a note holds in place of their bytes.

``flor.log("confusion", fig)`` stores the PNG in the object store (by sha256, like a
checkpoint) and logs a reference as the record's value, with the record's ``ty`` saying
what it is::

    {"t":"log","s":9,"n":"confusion","v":{"sha":"ab12..","file":"confusion.png",
     "mime":"image/png","bytes":5120,"w":640,"h":480},"ty":"flor.Image","c":{"epoch":2}}

The bytes travel as checkpoints do (``flor push`` copies them to the shared store). A
reference arrives with a pulled note, written by someone else: :func:`parse` accepts it
only when the digest is a digest and the file name is a plain name, because both become
paths (in the store, in ``flor export``'s directory).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flor_cli.storage.objects import is_digest

IMAGE_TYPE = "flor.Image"
FILE_TYPE = "flor.File"
MEDIA_TYPES = (IMAGE_TYPE, FILE_TYPE)

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


@dataclass(frozen=True)
class MediaRef:
    """A logged image or file: where its bytes are and what to call them."""

    sha: str
    file: str
    mime: str
    size: int
    width: int | None = None
    height: int | None = None

    @property
    def is_image(self) -> bool:
        return self.mime.startswith("image/")

    def to_json(self) -> dict:
        value: dict[str, Any] = {"sha": self.sha, "file": self.file, "mime": self.mime,
                                 "bytes": self.size}
        if self.width is not None:
            value.update(w=self.width, h=self.height)
        return value


def parse(value: Any) -> MediaRef | None:
    """The reference in a logged value (a dict, or its JSON text as the cache holds it);
    None when it is not a well-formed reference."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    sha, file, mime, size = (value.get(k) for k in ("sha", "file", "mime", "bytes"))
    if not (is_digest(sha) and isinstance(file, str)
            and _FILE_NAME.fullmatch(file) and ".." not in file and isinstance(mime, str)
            and len(mime) < 100 and type(size) is int and size >= 0):
        return None
    width, height = value.get("w"), value.get("h")
    if not (type(width) is int and type(height) is int):
        width = height = None
    return MediaRef(sha, file, mime, size, width, height)


def safe_file_name(name: str, suffix: str) -> str:
    """A plain file name (what :func:`parse` accepts) made from a logged name."""
    stem = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "file"
    stem = stem.replace("..", "_")
    return (stem[: 120 - len(suffix)] or "file") + suffix
