"""Checkpoints: the state replay restores in place of a nested loop it skips.

Capturing is split the way the VLDB'21 paper does it: the training thread only *copies*
the state (tensors to CPU memory, other objects pickled), and a background thread
serializes, hashes and writes it to the content-addressed store. The period adapts so
that checkpointing costs at most ~1/15 of loop time: an iteration whose nested loop took
``L`` seconds while a checkpoint costs ``C`` is memoized every ``ceil(15*C/L)``
iterations (every iteration when ``L >= 15*C``); the first and the last iteration (when
the loop's length is known) are always kept.

A checkpoint is everything the rest of the run can observe of what the nested loop did:

* torch modules: the state dict (parameters and buffers), each parameter's ``.grad``
  (None stays None: ``zero_grad()`` and ``zero_grad(set_to_none=False)`` differ) and each
  submodule's ``training`` flag (a loop that calls ``model.eval()``);
* other objects with ``state_dict``/``load_state_dict`` (optimizers, LR schedulers,
  GradScaler) by state dict; both with ``torch.save``; everything else with cloudpickle,
  restored in place;
* the loop's effects on the frame that runs it (see :mod:`effects`): the values of the
  names its body binds or mutates, pickled with the declared objects *by reference* (so a
  restored ``self`` still holds the live model), put back into that frame — module or
  function scope — when replay skips the loop. Dicts, lists and sets passed to a call
  in the loop (which may fill them in) are captured as well, when they can be. A value that cannot be pickled, or whose
  pickle is over ``FRAME_VALUE_CAP`` bytes, is listed by name in the record's ``nc``
  (not captured); replay's planner re-executes the runs whose statements read it.
  Modules, functions and classes are not state and are left out;
* RNG states (python, numpy, torch CPU, CUDA), so that what follows draws the same numbers.

Copying the frame costs training-thread time like the rest, so it counts in the
adaptive period's cost (``BUDGET``).
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
import types
from typing import Any, Callable

from flor_cli.runtime.effects import Effects
from flor_cli.storage import notes
from flor_cli.storage.notes import (BLOCK, BYTES, CAPTURED, CKPT, CTX, KIND, NOT_CAPTURED,
                                    OBJECTS, ORDINAL, SECONDS, SERIALIZER, SHA)
from flor_cli.storage.objects import ObjectStore

BUDGET = 15.0  # loop time per unit of checkpoint cost (VLDB'21)
RNG = "__rng__"
FRAME = "__frame__"  # the nested loop's effects on its frame
FRAME_VALUE_CAP = 16 << 20  # bytes: a bigger value (a whole dataset bound to a name) is
# listed as not captured rather than copied at every checkpoint
_CONTAINERS = (dict, list, set)  # what a call is given to fill in: `update(stats)`
_NOT_STATE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
              type)


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
                      loop_seconds: float, frame: types.FrameType | None = None,
                      effects: Effects | None = None) -> None:
        """Checkpoint at the end of a nested loop, if the adaptive period says so.

        ``frame`` is the frame that ran the loop and ``effects`` what its body changes
        there (None: not known, so nothing of the frame can be restored: ``nc`` says
        ``*``)."""
        self._adapt(loop_seconds)
        due = (self.taken_at < 0 or last or outer_index - self.taken_at >= self.period
               or outer_index == self.taken_at)  # a second nested loop of the same epoch
        if not due:
            return
        start = time.perf_counter()
        states = {name: _copy_state(obj) for name, obj in self.objects.items()}
        states[RNG] = rng_state()
        extra: dict[str, list[str]] = {NOT_CAPTURED: ["*"]}
        if frame is not None and effects is not None:
            values, extra = capture_frame(frame, effects, self.objects)
            states[FRAME] = (notes.FRAME, values)
        self.taken_at = outer_index
        self._jobs.put((dict(ctx), ordinal, states, extra, time.perf_counter() - start))

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
            ctx, ordinal, states, extra, copy_seconds = job
            start = time.perf_counter()
            digests, size = {}, 0
            for name, (kind, state) in states.items():
                data = _serialize(kind, state)
                digests[name] = {SERIALIZER: kind, SHA: self.store.put(data)}
                size += len(data)
            seconds = copy_seconds + time.perf_counter() - start
            self.cost = seconds if self.cost == 0 else 0.5 * (self.cost + seconds)
            self.emit({KIND: CKPT, BLOCK: self.block, CTX: ctx, ORDINAL: ordinal,
                       OBJECTS: digests, **extra, BYTES: size, SECONDS: round(seconds, 6)})


def restore(objects: dict[str, Any], entry: dict, store: ObjectStore,
            frame: types.FrameType | None = None) -> None:
    """Put the checkpointed state back into the live objects and into ``frame`` (the
    frame running the skipped loop), RNG states included.

    Every object is in the local store before any is applied (fetched from a remote
    store, one at a time): one in no store raises ``MissingObject`` with the live state
    untouched, so the caller can re-execute the loop instead, exactly."""
    for info in entry[OBJECTS].values():
        if not store.path(info[SHA]).exists():
            store.get(info[SHA])  # kept locally once fetched
    for name, info in entry[OBJECTS].items():
        state = _deserialize(info[SERIALIZER], store.get(info[SHA]))
        if name == RNG:
            set_rng_state(state)
        elif name == FRAME:
            if frame is not None:
                restore_frame(frame, state, objects)
        elif name in objects:
            _load_state(objects[name], info[SERIALIZER], state)


# -- the frame ---------------------------------------------------------------------------

def capture_frame(frame: types.FrameType, effects: Effects, objects: dict[str, Any]
                  ) -> tuple[dict[str, tuple[bytes, bool]], dict[str, list[str]]]:
    """The values ``effects`` names in ``frame``: name -> (pickle, restore in place), and
    the record's lists: ``fx`` (captured) and ``nc`` (not captured)."""
    local = _local_names(frame)
    declared = {id(o) for o in objects.values()}
    values: dict[str, tuple[bytes, bool]] = {}
    missed: list[str] = []
    certain = effects.names
    for name in [*certain, *sorted(effects.passed - set(certain))]:
        scope = frame.f_locals if name in local else frame.f_globals
        if name not in scope:
            continue  # never bound (the loop ran no iteration): nothing to put back
        value = scope[name]
        if isinstance(value, _NOT_STATE) or id(value) in declared:
            continue  # code, or restored by its own state
        maybe = name in effects.passed and name not in certain
        if maybe and not isinstance(value, _CONTAINERS):
            continue  # a tensor or batch handed to a model: not worth a copy per checkpoint
        try:
            data = _pickle_by_reference(value, objects)
        except Exception:  # noqa: BLE001 - whatever an object's reducer raises
            data = None
        if data is not None and len(data) <= FRAME_VALUE_CAP:
            values[name] = (data, name not in effects.bound)
        elif not maybe:
            missed.append(name)
    return values, {CAPTURED: sorted(values), NOT_CAPTURED: missed}


def restore_frame(frame: types.FrameType, values: dict[str, tuple[bytes, bool]],
                  objects: dict[str, Any]) -> None:
    """Put captured values back: a mutated object in place where the frame still holds
    one of its type (other references to it see the change, as they did), else bound."""
    local = _local_names(frame)
    changed_locals = False
    f_locals = frame.f_locals  # a function frame's snapshot of its fast locals
    for name, (data, in_place) in values.items():
        value = _unpickle_by_reference(data, objects)
        scope = f_locals if name in local else frame.f_globals
        current = scope.get(name, _MISSING)
        if not (in_place and type(current) is type(value) and _update_in_place(current, value)):
            scope[name] = value
            changed_locals |= scope is f_locals and f_locals is not frame.f_globals
    if changed_locals:
        import ctypes

        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


_MISSING = object()


def _local_names(frame: types.FrameType) -> set[str]:
    """Names that are the frame's own (function locals and cells); the rest are globals."""
    if frame.f_locals is frame.f_globals:
        return set()
    code = frame.f_code
    return {*code.co_varnames, *code.co_cellvars, *code.co_freevars}


def _update_in_place(current: Any, value: Any) -> bool:
    """Give ``current`` the contents of ``value``, keeping its identity so that every
    other reference to it sees the restored state: a dict, list, bytearray, set or plain
    object (its ``__dict__``). False for anything else (tensors and arrays, objects with
    a ``state_dict``, immutables): the caller rebinds or loads those its own way."""
    if isinstance(current, dict):
        current.clear()
        current.update(value)
    elif isinstance(current, (list, bytearray)):
        current[:] = value
    elif isinstance(current, set):
        current.clear()
        current.update(value)
    elif hasattr(current, "__dict__") and not _has_state_dict(current) \
            and not _is_array(current):
        current.__dict__.clear()
        current.__dict__.update(value.__dict__)
    else:
        return False
    return True


def _is_array(obj: Any) -> bool:
    """A numpy array or tensor: restored by slice assignment, never by its ``__dict__``."""
    return hasattr(obj, "__setitem__") and hasattr(obj, "shape")


def _pickle_by_reference(value: Any, objects: dict[str, Any]) -> bytes:
    """cloudpickle of ``value``, the declared objects in it pickled as their names."""
    import cloudpickle

    names = {id(o): name for name, o in objects.items()}

    class Pickler(cloudpickle.CloudPickler):
        def persistent_id(self, obj: Any) -> str | None:
            return names.get(id(obj))

    buf = io.BytesIO()
    Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buf.getvalue()


def _unpickle_by_reference(data: bytes, objects: dict[str, Any]) -> Any:
    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: str) -> Any:
            return objects[pid]

    return Unpickler(io.BytesIO(data)).load()


# -- declared objects ----------------------------------------------------------------------

def _copy_state(obj: Any) -> tuple[str, Any]:
    if _is_module(obj):
        return notes.MODULE, _detached_copy({
            "state": obj.state_dict(),
            "grads": {n: p.grad for n, p in obj.named_parameters()},
            "training": {n: m.training for n, m in obj.named_modules()}})
    if _has_state_dict(obj):
        return notes.STATE_DICT, _detached_copy(obj.state_dict())
    import cloudpickle

    return notes.PICKLE, cloudpickle.dumps(obj)


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


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _serialize(kind: str, state: Any) -> bytes:
    if kind in (notes.STATE_DICT, notes.MODULE):
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()
    if kind == notes.PICKLE:
        return state  # already pickled on the training thread
    return pickle.dumps(state)


def _deserialize(kind: str, data: bytes) -> Any:
    if kind in (notes.STATE_DICT, notes.MODULE):
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    return pickle.loads(data)


def _load_state(obj: Any, kind: str, state: Any) -> None:
    """Restore a declared object in place: torch objects by their state dicts,
    containers and plain objects as the frame's values are (:func:`_update_in_place`),
    arrays by slice assignment."""
    if kind == notes.MODULE:
        _load_module(obj, state)
    elif kind == notes.STATE_DICT:
        obj.load_state_dict(state)
    elif not _update_in_place(obj, state):
        if not _is_array(obj):
            raise TypeError(f"cannot restore a {type(obj).__name__} in place; "
                            "checkpoint a mutable container holding it instead")
        obj[...] = state


def _load_module(module: Any, state: dict) -> None:
    """Parameters and buffers, then each ``.grad`` (None stays None) and training flag."""
    module.load_state_dict(state["state"])
    grads = state["grads"]
    for name, param in module.named_parameters():
        grad = grads.get(name)
        if grad is None:
            param.grad = None
        elif param.grad is not None and param.grad.shape == grad.shape:
            param.grad.copy_(grad)  # the same tensor, as zero_grad(set_to_none=False) keeps it
        else:
            param.grad = grad.to(param.device)
    flags = state["training"]
    for name, sub in module.named_modules():
        if name in flags:
            sub.training = flags[name]


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
    return notes.RNG, state


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
