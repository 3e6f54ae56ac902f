"""How a flor process tells a script's interpreter to record or replay: the ``FLOR_*``
environment variables, every one of them named and described here.

``flor run`` (services/record.py) starts the script with :func:`record_env`; ``flor
replay`` (services/replay/execute.py) starts each worker with :func:`replay_env`. Inside
the script, ``import flor`` (runtime/api.py) takes them out of ``os.environ`` with
:func:`take_record` / :func:`take_replay`, so that processes the script starts do not
write into its run; the journal writer process and replay workers get an environment
:func:`without_protocol`. The man page's ENVIRONMENT section is rendered from
:data:`VARIABLES`.

This module is imported by ``import flor``: it stays light (no dataclasses).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, MutableMapping, NamedTuple

JOURNAL = "FLOR_JOURNAL"
STORE = "FLOR_STORE"
KWARGS = "FLOR_KWARGS"
T0 = "FLOR_T0"
REPLAY = "FLOR_REPLAY"

VARIABLES: dict[str, str] = {
    JOURNAL: "the journal the script appends its records to (set by `flor run`).",
    STORE: "the checkpoint store's directory (set by `flor run`).",
    KWARGS: "the `--kwargs` given to `flor run`, as a JSON object.",
    T0: "when `flor run` started, in seconds since the epoch: the run's prefix timing "
        "counts from there.",
    REPLAY: "set by `flor replay` for each worker: the replay job as a JSON object (names "
            "to record, mode, epoch range, recorded args, checkpoints, journal, store and the "
            "remote store it fetches missing checkpoints from).",
}


class RecordConfig(NamedTuple):
    """What ``flor run`` hands the script it supervises."""

    journal: Path
    store: Path
    kwargs: dict[str, str]
    t0: float


class ReplayConfig(NamedTuple):
    """One replay worker's job (see :mod:`flor_cli.runtime.replay_mode`)."""

    names: list[str]  # the flor.log names to record; every other log is dropped
    mode: str  # prefix, skip or nested (see services/replay/plan.py)
    journal: str  # the worker's scratch journal
    store: str  # the checkpoint store's directory
    range: list | None = None  # [lo, hi) epochs this worker re-runs (hi None: to the end)
    args: dict[str, Any] = {}  # what flor.arg resolved in the recorded run
    ckpts: list[dict] = []  # the recorded run's checkpoint records
    checkpointing: bool = False  # the recorded run entered a flor.checkpointing block
    parent: int | None = None  # flor replay's pid: the worker ends when it does
    remote: str | None = None  # a remote flor.store (fsspec URL) backing ``store``

    def to_json(self) -> str:
        return json.dumps(self._asdict())

    @classmethod
    def from_json(cls, text: str) -> "ReplayConfig":
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls._fields})


def record_env(config: RecordConfig, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``env`` for the script ``flor run`` starts."""
    return {**without_protocol(env), JOURNAL: str(config.journal), STORE: str(config.store),
            KWARGS: json.dumps(config.kwargs), T0: repr(config.t0)}


def replay_env(config: ReplayConfig, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``env`` for a replay worker."""
    return {**without_protocol(env), REPLAY: config.to_json()}


def without_protocol(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``env`` less every variable of this protocol: for a process that must not record."""
    return {k: v for k, v in env.items() if k not in VARIABLES}


def launched(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a flor process started this one to record or replay."""
    return JOURNAL in env or REPLAY in env


def take_record(env: MutableMapping[str, str] = os.environ) -> RecordConfig | None:
    """The ``flor run`` setup, removed from ``env``; None when not started by it."""
    if JOURNAL not in env:
        return None
    t0 = env.pop(T0, None)
    return RecordConfig(Path(env.pop(JOURNAL)), Path(env.pop(STORE)),
                        json.loads(env.pop(KWARGS, "{}")),
                        float(t0) if t0 is not None else time.time())


def take_replay(env: MutableMapping[str, str] = os.environ) -> ReplayConfig | None:
    """The replay job, removed from ``env``; None when not started by ``flor replay``."""
    return ReplayConfig.from_json(env.pop(REPLAY)) if REPLAY in env else None
