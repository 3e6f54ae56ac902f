"""Byte counts as people read them, written one way everywhere (``flor gc``, the notice
of big files left out of a snapshot, a long run's fold): binary units, named as such
(1 KiB = 1024 bytes). Standard library only: the runtime and storage use it too."""

from __future__ import annotations


def size_text(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``50.0 MiB``, ..., ``3.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
