"""The `optlab` command's `--backend`, applied before keras is imported.

Importing keras_optlab imports keras, which fixes the backend from
KERAS_BACKEND at that moment. When this process is the `optlab` command
(`optlab ...` or `python -m keras_optlab ...`), the package is imported
before the command parses its arguments, so `--backend` is read here first,
from `sys.argv`, and set as KERAS_BACKEND. This module must not import
keras.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

BACKENDS = ("tensorflow", "jax", "torch")
COMMAND = "optlab"


def is_command_line(argv: Sequence[str]) -> bool:
    """Whether `argv` is that of the `optlab` command being started.

    `python -m keras_optlab` imports the package while `sys.argv[0]` is still
    `"-m"` (Python sets the module's path only after importing its
    package); the `optlab` script has its own name as `argv[0]`.
    """
    if not argv:
        return False
    program = os.path.basename(argv[0])
    return argv[0] == "-m" or program in (COMMAND, f"{COMMAND}.exe", f"{COMMAND}-script.py")


def requested_backend(arguments: Sequence[str]) -> str | None:
    """The value of `--backend NAME` or `--backend=NAME` in `arguments`, if
    it names a backend; anything else is left to the command's parser."""
    for index, argument in enumerate(arguments):
        if argument == "--":
            break
        if argument == "--backend" and index + 1 < len(arguments):
            value = arguments[index + 1]
        elif argument.startswith("--backend="):
            value = argument.partition("=")[2]
        else:
            continue
        return value if value in BACKENDS else None
    return None


def apply_command_line_backend(argv: Sequence[str] | None = None) -> None:
    """Sets KERAS_BACKEND from `--backend` when this process is `optlab` and
    keras is not imported yet."""
    argv = sys.argv if argv is None else argv
    if "keras" in sys.modules or not is_command_line(argv):
        return
    backend = requested_backend(argv[1:])
    if backend is not None:
        os.environ["KERAS_BACKEND"] = backend
