"""The errors a user's input causes (a wrong path, a damaged file, a task or store that cannot be
used): every command answers them with one line, ``error: <file>: <what to do>``, and exit
status 1. Anything else is a bug and keeps its traceback."""
from __future__ import annotations

import sys
from contextlib import contextmanager


def user_errors() -> tuple[type[BaseException], ...]:
    from .checkpoints import CheckpointError
    from .data.errors import UnreadableInput
    from .data.ingest.pipeline import IngestError
    from .data.store import StoreError
    from .downstream.results import ResultsError
    from .downstream.task_data import TaskError
    from .pretrain.resume import ResumeError

    return CheckpointError, UnreadableInput, IngestError, StoreError, ResultsError, TaskError, ResumeError


def user_error_in(err: BaseException) -> BaseException | None:
    """``err``, or the user error it was raised from (jsonargparse wraps the errors of linked
    arguments, e.g. a task's class count, in its own), or None."""
    kinds, seen = user_errors(), set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kinds):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def one_line_errors():
    """Turn a user error raised inside into ``error: ...`` on stderr and exit status 1."""
    try:
        yield
    except Exception as err:
        found = user_error_in(err)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        raise SystemExit(1) from None
