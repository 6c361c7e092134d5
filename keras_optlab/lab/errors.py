"""The one exception the lab raises for bad input."""

from __future__ import annotations

import contextlib
from typing import Iterator


class UsageError(ValueError):
    """Bad input to the lab: a name it does not know, a value out of range,
    an output folder it cannot write. The `optlab` command prints the message
    as one line and exits with status 2."""


@contextlib.contextmanager
def as_usage_error() -> Iterator[None]:
    """Turns the `ValueError`/`TypeError` of an argument check into a
    `UsageError`, so that the command can tell bad input from a bug."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from error
