"""Loading untrusted checkpoints without executing code from them.

Every file goes through torch's weights-only unpickler (``torch.load(weights_only=True)``): it
calls only allow-listed functions and sets state only on instances of allow-listed classes,
never on a class or module. Its allow-list is widened with harmless Python objects that
checkpoints carry (an ``argparse.Namespace`` in Lightning's ``hyper_parameters``, numpy scalars
and arrays, paths). Any other class a zip checkpoint names becomes an inert stub (its state kept
as data, none of its code run). A pickle that calls a stub (the way a malicious ``__reduce__``
runs ``os.system``), or does anything else the unpickler does not allow, is refused with an
error saying what was refused.
"""
from __future__ import annotations

import argparse
import collections
import functools
import pathlib
import pickle
import pickletools
import re
import zipfile

import numpy as np
import torch

TRUST_HINT = ("If you trust this file and where it came from, load it with trust=True "
              "(command line: --trust-pickle), which runs its pickled code.")

# Errors that code run by the unpickler raises when a crafted pickle feeds it wrong arguments.
REBUILD_ERRORS = (TypeError, ValueError, AttributeError, AssertionError, KeyError, IndexError)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle would do something that is not known to be harmless."""


class _Refused(Exception):
    """Raised by a stub; not an UnpicklingError, so torch.load passes it on unchanged."""


class _StubType(type):
    def __call__(cls, *args, **kwargs):
        raise _Refused(f"its pickle calls {cls.__module__}.{cls.__qualname__}{args!r:.80}, which is "
                       "not known to be harmless: loading it the ordinary way would run that code.")


class Stub(metaclass=_StubType):
    """Stands in for a class the checkpoint names but this process does not trust."""

    def __new__(cls, *args):
        if args:
            raise _Refused(f"its pickle creates a {cls.__module__}.{cls.__qualname__} from the arguments "
                           f"{args!r:.80}, which would run that class's code.")
        return object.__new__(cls)

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<stub {type(self).__module__}.{type(self).__qualname__}>"


def _stub(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    return _StubType(name, (Stub,), {"__module__": module, "__qualname__": name})


@functools.cache
def extra_allowed() -> dict:
    """Harmless globals beyond torch's own weights-only allow-list, by pickled name."""
    extra = {
        "argparse.Namespace": argparse.Namespace,
        "collections.defaultdict": collections.defaultdict,
        "builtins.frozenset": frozenset, "builtins.slice": slice, "builtins.range": range,
        "builtins.dict": dict, "builtins.list": list, "builtins.tuple": tuple,
        "builtins.int": int, "builtins.float": float, "builtins.str": str, "builtins.bool": bool,
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


OPCODES = {ord(op.code): op for op in pickletools.opcodes}


def _reason(err: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, without its advice on weights_only=False."""
    message = str(err)
    blocked = re.search(r"GLOBAL (\S+) whose module (\S+) is blocked", message)
    if blocked:
        return (f"its pickle calls {blocked[1]}, from {blocked[2]}, a module no checkpoint needs: "
                "loading it the ordinary way would run that code.")
    unknown = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if unknown:
        return (f"its pickle names {unknown[1]}, which is not known to be harmless (this file is not "
                "a zip checkpoint, so unknown classes cannot be kept as inert data).")
    operand = re.search(r"Unsupported operand (\d+)", message)
    if operand:
        op = OPCODES.get(int(operand[1]))
        what = f"the opcode {op.name} (pickle protocol {op.proto})" if op else f"the byte {operand[1]}"
        return (f"its pickle uses {what}, which the weights-only unpickler does not read: a crafted "
                "file, or one saved with a pickle protocol other than torch.save's default 2.")
    build = re.search(r"Can only build .* but got (<[^>]+>)", message)
    if build:
        return (f"its pickle sets attributes of a {build[1]}, which is no instance of an allowed class "
                "(setting them on a class would change it for the whole process).")
    detail = message.rsplit("WeightsUnpickler error:", 1)[-1].split("\n\nCheck the documentation")[0]
    return f"the weights-only unpickler refuses its pickle: {' '.join(detail.split())}"


def _named_globals(path) -> list[str] | None:
    """Globals a zip checkpoint names beyond torch's allow-list; None for other files."""
    if zipfile.is_zipfile(path):
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except ValueError:  # TorchScript: torch.load says so
            return None
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(_reason(err)) from None
    with open(path, "rb") as file:  # the legacy format, or a bare pickle
        head = file.read(2)
    if head[:1] == pickle.PROTO:
        return None
    raise ValueError("the file is empty" if not head else
                     "a damaged zip archive (an interrupted download?)" if head == b"PK" else
                     "neither a zip archive nor a pickle (torch.save writes one of the two)")


def _is_module_stub(obj) -> bool:
    state = getattr(obj, "_state", None)
    return isinstance(obj, Stub) and isinstance(state, dict) and {"_modules", "_parameters"} <= set(state)


def whole_module_refusal(obj) -> str | None:
    """Why a loaded checkpoint that is (or holds, one level down) a pickled nn.Module is
    refused; None if it holds none."""
    places = {"": obj}
    if isinstance(obj, dict):
        places.update({f" under {key!r}": value for key, value in obj.items()})
    for where, value in places.items():
        if _is_module_stub(value):
            return (f"it holds a whole pickled module ({type(value).__module__}."
                    f"{type(value).__qualname__}{where}), not a state dict: rebuilding it runs that "
                    "class's code. Re-save it as torch.save(model.state_dict(), path), or load it "
                    "trusted (its state_dict() is then used).")
    return None


def safe_load(path, trust: bool = False):
    """(object, how) where how says how it was loaded: "weights_only" (with the allow-listed and
    stubbed names, if any) or "trusted". Raises UnsafeCheckpointError, saying what was refused."""
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False), "trusted"
    named = _named_globals(path)
    allowed = extra_allowed()
    listed = sorted(n for n in named or () if n in allowed)
    stubbed = sorted(n for n in named or () if n not in allowed)
    entries = [(obj, name) for name, obj in allowed.items()] + [(_stub(n), n) for n in stubbed]
    already = set(torch.serialization.get_safe_globals())
    unknown = f" (names in it not known to be harmless: {', '.join(stubbed)})" if stubbed else ""
    try:
        with torch.serialization.safe_globals([e for e in entries if e not in already]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except _Refused as err:
        raise UnsafeCheckpointError(f"{err}{unknown}") from None
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(f"{_reason(err)}{unknown}") from None
    except REBUILD_ERRORS as err:
        raise UnsafeCheckpointError(f"its pickle makes an allowed call or build fail ({type(err).__name__}: "
                                    f"{err}): a crafted or damaged file.{unknown}") from None
    how = "weights_only"
    if listed:
        how += f", allow-listed: {', '.join(listed)}"
    if stubbed:
        how += f"; stubbed: {', '.join(stubbed)}"
    return obj, how
