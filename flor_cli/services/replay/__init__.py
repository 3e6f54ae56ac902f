"""Replay: hindsight logging by re-running old versions of a script."""
