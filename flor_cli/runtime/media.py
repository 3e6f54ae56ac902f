"""``flor.Image`` and ``flor.File``: log pictures and files by reference.

``flor.log(name, x)`` stores the bytes of an image or file in the object store and logs a
:class:`~flor_cli.storage.media.MediaRef`. Images are a matplotlib Figure, a PIL image,
or an array/tensor wrapped in :class:`Image` (an array left unwrapped is data, logged as
numbers). Everything here is imported by every training script, so nothing heavy is:
matplotlib and PIL are never imported (their objects are recognised by their module and
asked to save themselves), numpy only reached through the user's own array, and PNGs of
arrays are written with zlib.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

from flor_cli.storage.media import FILE_TYPE, IMAGE_TYPE, MediaRef, safe_file_name
from flor_cli.storage.objects import ObjectStore

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+a, RGB, RGBA)


class Image:
    """An image to log: an H×W or H×W×C (C in 1..4) array or tensor, a matplotlib Figure
    or a PIL image. Float pixels are read as 0..1, integers as 0..255."""

    def __init__(self, data: Any):
        self.data = data

    def png(self) -> bytes:
        return _png_of(self.data)


class File:
    """A file to log, by path: its bytes are stored when it is logged."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


def is_media(value: Any) -> bool:
    """Whether ``flor.log`` stores ``value`` as a file: a wrapper, a Figure, a PIL image."""
    return isinstance(value, (Image, File)) or _drawable(value)


def _drawable(value: Any) -> bool:
    root = type(value).__module__.partition(".")[0]
    return (root == "matplotlib" and hasattr(value, "savefig")) or (
        root == "PIL" and hasattr(value, "save") and hasattr(value, "mode"))


def store(name: str, value: Any, objects: ObjectStore) -> tuple[dict, str]:
    """Put ``value``'s bytes in ``objects``; (the reference to log, its record type)."""
    if isinstance(value, File):
        data = value.read()
        base = os.path.basename(value.path)
        stem, suffix = os.path.splitext(base)
        import mimetypes

        mime = mimetypes.guess_type(base)[0] or "application/octet-stream"
        ref = MediaRef(objects.put(data), safe_file_name(stem or name, suffix), mime, len(data))
        return ref.to_json(), FILE_TYPE
    data = value.png() if isinstance(value, Image) else _png_of(value)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk of every PNG
    ref = MediaRef(objects.put(data), safe_file_name(name, ".png"), "image/png", len(data),
                   width, height)
    return ref.to_json(), IMAGE_TYPE


def _png_of(data: Any) -> bytes:
    root = type(data).__module__.partition(".")[0]
    buffer = io.BytesIO()
    if root == "matplotlib" and hasattr(data, "savefig"):
        data.savefig(buffer, format="png")
        return buffer.getvalue()
    if root == "PIL" and hasattr(data, "save"):
        data.save(buffer, format="PNG")
        return buffer.getvalue()
    return encode_png(_pixels(data))


def _pixels(data: Any):
    """An H×W×C uint8 array of an array or tensor, channels last."""
    if type(data).__module__.partition(".")[0] == "torch":
        data = data.detach().cpu().numpy()
    if not hasattr(data, "__array__"):
        raise TypeError(f"flor.Image: expected an array, a tensor, a matplotlib Figure or a "
                        f"PIL image, got {type(data).__name__}")
    import numpy as np  # the user's array is numpy's (or converts to it): numpy is loaded

    array = np.asarray(data)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _COLOUR_TYPES or 0 in array.shape:
        raise ValueError(f"flor.Image: expected shape H×W or H×W×C with C in 1..4, got "
                         f"{tuple(array.shape)}")
    if array.dtype == bool:
        array = array * 255
    elif array.dtype.kind == "f":
        array = np.nan_to_num(array) * 255 + 0.5
    return np.clip(array, 0, 255).astype(np.uint8)


def encode_png(pixels) -> bytes:
    """The PNG of an H×W×C uint8 array (8 bits a channel, no filtering)."""
    height, width, channels = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 6))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
