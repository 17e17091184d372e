"""Loading untrusted checkpoints without executing code from them.

First ``torch.load(weights_only=True)``. If the file also carries harmless Python objects
(an ``argparse.Namespace`` in Lightning's ``hyper_parameters``, numpy scalars, paths, a class
of some training script), a restricted unpickler takes over: known data types are rebuilt,
unknown classes become inert stubs (their state is kept as data, no code of theirs runs), and a
pickle that CALLS anything unknown (the way a malicious ``__reduce__`` runs ``os.system``) is
refused with an error naming the risk and the opt-in.
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import pickle
import types

import numpy as np
import torch

TRUST_HINT = ("If you trust this file and where it came from, load it with trust=True "
              "(command line: --trust-pickle), which runs its pickled code.")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle would call code that is not known to be harmless."""


class Stub:
    """Stands in for a class the checkpoint names but this process does not trust."""

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<stub {type(self).__module__}.{type(self).__qualname__}>"


def _extra_allowed() -> dict:
    extra = {
        "argparse.Namespace": argparse.Namespace,
        "collections.OrderedDict": collections.OrderedDict,
        "collections.defaultdict": collections.defaultdict,
        "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice,
        "builtins.complex": complex, "builtins.bytearray": bytearray, "builtins.range": range,
        "builtins.dict": dict, "builtins.list": list, "builtins.tuple": tuple,
        "builtins.int": int, "builtins.float": float, "builtins.str": str, "builtins.bool": bool,
        "copyreg._reconstructor": __import__("copyreg")._reconstructor,
        "builtins.object": object,
    }
    for cls in (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath,
                pathlib.PurePosixPath, pathlib.PureWindowsPath):
        extra[f"pathlib.{cls.__name__}"] = cls
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        extra[f"{module}.scalar"] = multiarray.scalar
        extra[f"{module}._reconstruct"] = multiarray._reconstruct
    extra["numpy.ndarray"] = np.ndarray
    extra["numpy.dtype"] = np.dtype
    for name in dir(np.dtypes):
        cls = getattr(np.dtypes, name)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            extra[f"numpy.dtypes.{name}"] = cls
    return extra


def allowed_globals() -> dict:
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = dict(_get_allowed_globals())
    allowed.update(_extra_allowed())
    return allowed


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler: allow-listed globals are real, the rest are stubs, and REDUCE
    (a call) on a stub is refused."""

    dispatch = dict(pickle._Unpickler.dispatch)
    _allowed: dict | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = allowed_globals()
        self.stubbed: set[str] = set()

    def find_class(self, module: str, name: str):
        key = f"{module}.{name}"
        found = self._allowed.get(key)
        if found is not None:
            return found
        self.stubbed.add(key)
        return type(name, (Stub,), {"__module__": module, "__qualname__": name})

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if isinstance(func, type) and issubclass(func, Stub):
            raise UnsafeCheckpointError(
                f"its pickle calls {func.__module__}.{func.__qualname__}{args!r:.80}, which is not "
                "known to be harmless: loading it the ordinary way would run that code.")
        self.stack[-1] = func(*args)

    dispatch[pickle.REDUCE[0]] = load_reduce


def _restricted_module(stubbed: set):
    class Unpickler(RestrictedUnpickler):
        def find_class(self, module, name):
            result = super().find_class(module, name)
            stubbed.update(self.stubbed)
            return result

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(Unpickler=Unpickler, load=load, __name__="medssl_restricted_pickle")


def safe_load(path, trust: bool = False):
    """(object, how) where how says which path loaded it: "weights_only", "restricted" (with
    the stubbed class names) or "trusted"."""
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False), "trusted"
    try:
        return torch.load(path, map_location="cpu", weights_only=True), "weights_only"
    except pickle.UnpicklingError:
        pass
    stubbed: set[str] = set()
    obj = torch.load(path, map_location="cpu", weights_only=False,
                     pickle_module=_restricted_module(stubbed))
    how = "restricted" + (f" (stubbed: {', '.join(sorted(stubbed))})" if stubbed else "")
    return obj, how
