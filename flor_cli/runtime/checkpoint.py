"""Checkpoints: the state replay restores in place of a nested loop it skips.

Capturing is split the way the VLDB'21 paper does it: the training thread only *copies*
the state (tensors to CPU memory, other objects pickled), and a background thread
serializes, hashes and writes it to the content-addressed store. The period adapts so
that checkpointing costs at most ~1/15 of loop time: an iteration whose nested loop took
``L`` seconds while a checkpoint costs ``C`` is memoized every ``ceil(15*C/L)``
iterations (every iteration when ``L >= 15*C``); the first and the last iteration (when
the loop's length is known) are always kept.

Objects with ``state_dict``/``load_state_dict`` (torch modules, optimizers, LR
schedulers, GradScaler, anything following that protocol) are saved by state dict with
``torch.save``; everything else with cloudpickle and restored in place. RNG states
(python, numpy, torch CPU, CUDA) go with every checkpoint so that replay is exact.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import queue
import random
import sys
import threading
import time
from typing import Any, Callable

from flor_cli.storage.notes import (BLOCK, BYTES, CKPT, CTX, KIND, OBJECTS, ORDINAL, SECONDS,
                                    SERIALIZER, SHA)
from flor_cli.storage.objects import ObjectStore

BUDGET = 15.0  # loop time per unit of checkpoint cost (VLDB'21)
RNG = "__rng__"


class Checkpointer:
    def __init__(self, objects: dict[str, Any], store: ObjectStore,
                 emit: Callable[[dict], None], block: int = 0):
        self.objects = objects
        self.store = store
        self.emit = emit
        self.block = block  # which flor.checkpointing block of the run (see notes.loop_key)
        self.cost = 0.0  # seconds per checkpoint: copy on this thread + write behind it
        self.period = 1
        self.taken_at = -1  # outer index of the last checkpoint taken
        self._jobs: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._write_loop, name="flor-ckpt", daemon=True)
        self._worker.start()

    # -- training thread ---------------------------------------------------------------

    def maybe_capture(self, ctx: dict, ordinal: int, outer_index: int, last: bool,
                      loop_seconds: float) -> None:
        """Checkpoint at the end of a nested loop, if the adaptive period says so."""
        self._adapt(loop_seconds)
        due = (self.taken_at < 0 or last or outer_index - self.taken_at >= self.period
               or outer_index == self.taken_at)  # a second nested loop of the same epoch
        if not due:
            return
        start = time.perf_counter()
        states = {name: _copy_state(obj) for name, obj in self.objects.items()}
        states[RNG] = rng_state()
        self.taken_at = outer_index
        self._jobs.put((dict(ctx), ordinal, states, time.perf_counter() - start))

    def close(self) -> None:
        """Wait for pending writes: a checkpoint in the manifest must exist on disk."""
        self._jobs.put(None)
        self._worker.join()

    def _adapt(self, loop_seconds: float) -> None:
        if self.cost > 0 and loop_seconds > 0:
            self.period = max(1, math.ceil(BUDGET * self.cost / loop_seconds))

    # -- background thread -------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            ctx, ordinal, states, copy_seconds = job
            start = time.perf_counter()
            digests, size = {}, 0
            for name, (kind, state) in states.items():
                data = _serialize(kind, state)
                digests[name] = {SERIALIZER: kind, SHA: self.store.put(data)}
                size += len(data)
            seconds = copy_seconds + time.perf_counter() - start
            self.cost = seconds if self.cost == 0 else 0.5 * (self.cost + seconds)
            self.emit({KIND: CKPT, BLOCK: self.block, CTX: ctx, ORDINAL: ordinal,
                       OBJECTS: digests, BYTES: size, SECONDS: round(seconds, 6)})


def restore(objects: dict[str, Any], entry: dict, store: ObjectStore) -> None:
    """Put the checkpointed state back into the live objects, RNG states included."""
    for name, info in entry[OBJECTS].items():
        state = _deserialize(info[SERIALIZER], store.get(info[SHA]))
        if name == RNG:
            set_rng_state(state)
        elif name in objects:
            _load_state(objects[name], info["kind"], state)


def _copy_state(obj: Any) -> tuple[str, Any]:
    if _has_state_dict(obj):
        return "state_dict", _detached_copy(obj.state_dict())
    import cloudpickle

    return "pickle", cloudpickle.dumps(obj)


def _has_state_dict(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None))


def _detached_copy(state: Any) -> Any:
    """A copy that training cannot change under the writer thread; tensors land on CPU."""
    if hasattr(state, "detach") and hasattr(state, "to"):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return type(state)((k, _detached_copy(v)) for k, v in state.items())
    if isinstance(state, (list, tuple)):
        return type(state)(_detached_copy(v) for v in state)
    return copy.deepcopy(state)


def _serialize(kind: str, state: Any) -> bytes:
    if kind == "state_dict":
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()
    if kind == "pickle":
        return state  # already pickled on the training thread
    return pickle.dumps(state)


def _deserialize(kind: str, data: bytes) -> Any:
    if kind == "state_dict":
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    return pickle.loads(data)


def _load_state(obj: Any, kind: str, state: Any) -> None:
    if kind == "state_dict":
        obj.load_state_dict(state)
    elif isinstance(obj, dict):
        obj.clear()
        obj.update(state)
    elif isinstance(obj, list):
        obj[:] = state
    elif hasattr(obj, "__setitem__") and hasattr(obj, "shape"):
        obj[...] = state  # numpy arrays
    elif hasattr(obj, "__dict__"):
        obj.__dict__.clear()
        obj.__dict__.update(state.__dict__)
    else:
        raise TypeError(f"cannot restore a {type(obj).__name__} in place; "
                        "checkpoint a mutable container holding it instead")


def rng_state() -> tuple[str, dict]:
    state: dict[str, Any] = {"python": random.getstate()}
    np = sys.modules.get("numpy")
    if np is not None:
        state["numpy"] = np.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return "rng", state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    if "numpy" in state:
        import numpy

        numpy.random.set_state(state["numpy"])
    if "torch" in state:
        import torch

        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
