"""The project's one user-error type.

Anything a user can cause — a missing file, a corrupt image, a bad option, a bundle of the
wrong version — raises :class:`SalkitError` with a message that names the offending value.
Command-line entry points turn it into one line on stderr and exit code 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])

USER_ERROR_EXIT_CODE = 2


class SalkitError(Exception):
    """A problem with the user's input, files or options (not a bug in salkit)."""


def report_user_errors(func: F) -> F:
    """Wrap a CLI entry point: a SalkitError becomes ``error: <message>`` and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except SalkitError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT_CODE)

    return wrapper
