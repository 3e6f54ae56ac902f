"""flor: record ML training runs in git and backfill logs into them by replay."""

__version__ = "0.1.0"
